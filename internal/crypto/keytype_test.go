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
