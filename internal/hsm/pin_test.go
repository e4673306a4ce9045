package hsm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadPINFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string // "" with noFile: no file at all
		noFile  bool
		want    string
		wantErr string
	}{
		{name: "plain", content: "123456", want: "123456"},
		{name: "echo newline", content: "123456\n", want: "123456"},
		{name: "CRLF", content: "123456\r\n", want: "123456"},
		{name: "spaces kept", content: " 12 34 \n", want: " 12 34 "},
		{name: "empty", content: "", wantErr: "is empty"},
		{name: "newline only", content: "\n", wantErr: "is empty"},
		{name: "two lines", content: "1234\n5678\n", wantErr: "more than one line"},
		{name: "two newlines", content: "1234\n\n", wantErr: "more than one line"},
		{name: "too large", content: strings.Repeat("7", 1025), wantErr: "larger than 1024 bytes"},
		{name: "missing", noFile: true, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if !tt.noFile {
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ReadPINFile(path)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ReadPINFile = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
				t.Fatalf("ReadPINFile error %v, want one naming the file and containing %q", err, tt.wantErr)
			}
			if c := strings.TrimSpace(tt.content); c != "" && strings.Contains(err.Error(), c) {
				t.Fatalf("error %q holds the file's content", err)
			}
		})
	}
}

func TestReadSoftKeyFile(t *testing.T) {
	key, err := GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		wantErr string // "" = the HSM of key
	}{
		{name: "keep --soft-hsm > file", content: key + "\n"},
		{name: "no newline", content: key},
		{name: "not a key", content: "hsm:aes256:c2VjcmV0\n", wantErr: "invalid soft HSM key"},
		{name: "two lines", content: key + "\n" + key + "\n", wantErr: "more than one line"},
		{name: "empty", content: "", wantErr: "is empty"},
	}
	want, err := ParseSoftKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadSoftKeyFile(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("ReadSoftKeyFile error %v, want one naming the file and containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "c2VjcmV0") || strings.Contains(err.Error(), key) {
					t.Fatalf("error %q holds the file's content", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sealsAlike(t, got, want) {
				return
			}
			t.Fatal("ReadSoftKeyFile returned another key than the file's")
		})
	}
}

// sealsAlike reports whether b unseals what a seals: the same key.
func sealsAlike(t *testing.T, a, b *Soft) bool {
	t.Helper()
	ct, err := a.Seal(t.Context(), []byte("root"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Unseal(t.Context(), ct)
	return err == nil
}
