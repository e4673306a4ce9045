package cli

import (
	"bytes"
	"testing"

	"github.com/minio/kms-go/kms"
)

func TestParseCiphertext(t *testing.T) {
	tests := []struct {
		in      string
		version int
		data    []byte
		wantErr bool
	}{
		{in: "v1:AAEC", version: 1, data: []byte{0, 1, 2}},
		{in: "v42:AAEC", version: 42, data: []byte{0, 1, 2}},
		{in: "v0:AAEC", version: 0, data: []byte{0, 1, 2}},
		{in: "AAEC", version: 0, data: []byte{0, 1, 2}},
		{in: " v3:AAE= \n", version: 3, data: []byte{0, 1}},
		{in: "v3:AAE", version: 3, data: []byte{0, 1}}, // padding is optional
		{in: "vX:AAEC", wantErr: true},
		{in: "1:AAEC", wantErr: true},
		{in: "v-1:AAEC", wantErr: true},
		{in: "v4294967296:AAEC", wantErr: true}, // not a uint32
		{in: "v1:", wantErr: true},
		{in: "", wantErr: true},
		{in: "v1:not base64!", wantErr: true},
		{in: "v1:AA-_", wantErr: true}, // URL alphabet
	}
	for _, tt := range tests {
		version, data, err := parseCiphertext(tt.in)
		if tt.wantErr {
			if err == nil {
				t.Errorf("parseCiphertext(%q) succeeded, want an error", tt.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseCiphertext(%q): %v", tt.in, err)
			continue
		}
		if version != tt.version || !bytes.Equal(data, tt.data) {
			t.Errorf("parseCiphertext(%q) = %d, %x; want %d, %x", tt.in, version, data, tt.version, tt.data)
		}
	}
}

func TestCiphertextRoundTrip(t *testing.T) {
	for _, version := range []int{0, 1, 7, 1 << 31} {
		data := []byte{0xff, 0xfe, 0xfd, 0, 1}
		s := formatCiphertext(version, data)
		v, d, err := parseCiphertext(s)
		if err != nil || v != version || !bytes.Equal(d, data) {
			t.Errorf("%s: got %d, %x, %v", s, v, d, err)
		}
	}
}

func TestParseKeyType(t *testing.T) {
	tests := []struct {
		in      string
		want    kms.SecretKeyType
		wantErr bool
	}{
		{"", 0, false},
		{"AES256", kms.AES256, false},
		{"aes256", kms.AES256, false},
		{"ChaCha20", kms.ChaCha20, false},
		{"CHACHA20", kms.ChaCha20, false},
		{"AES128", 0, true},
	}
	for _, tt := range tests {
		got, err := parseKeyType(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseKeyType(%q) = %v, %v", tt.in, got, err)
		}
	}
}
