package crypto

import (
	"errors"
	"testing"
)

func TestParseKeyType(t *testing.T) {
	tests := []struct {
		in      string
		want    KeyType
		wantErr bool
	}{
		{in: "", want: AES256},
		{in: "AES256", want: AES256},
		{in: "ChaCha20", want: ChaCha20},
		{in: "aes256", wantErr: true},
		{in: "CHACHA20", wantErr: true},
		{in: "chacha20", wantErr: true},
		{in: "AES-256", wantErr: true},
		{in: " AES256", wantErr: true},
		{in: "AES256\x00", wantErr: true},
		{in: "RSA", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseKeyType(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidKeyType) {
				t.Errorf("ParseKeyType(%q): got error %v, want ErrInvalidKeyType", tt.in, err)
			}
			if got != "" {
				t.Errorf("ParseKeyType(%q): got %q with error, want \"\"", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseKeyType(%q) = %q, %v; want %q, nil", tt.in, got, err, tt.want)
		}
	}
}

func TestKeyTypeCode(t *testing.T) {
	tests := []struct {
		typ  KeyType
		code byte
	}{
		{AES256, 1},
		{ChaCha20, 2},
		{"", 0},
		{"aes256", 0},
	}
	for _, tt := range tests {
		if got := tt.typ.Code(); got != tt.code {
			t.Errorf("%q.Code() = %d, want %d", tt.typ, got, tt.code)
		}
		if tt.code != 0 {
			if got := KeyTypeOf(tt.code); got != tt.typ {
				t.Errorf("KeyTypeOf(%d) = %q, want %q", tt.code, got, tt.typ)
			}
		}
	}
	if got := KeyTypeOf(3); got != "" {
		t.Errorf("KeyTypeOf(3) = %q, want none", got)
	}
}
