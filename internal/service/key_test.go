package service

import (
	"context"
	"testing"

	"github.com/keep-kms/keep/internal/crypto"
)

// TestRotationKeepsType: a new version has the key's type unless the
// request names one.
func TestRotationKeepsType(t *testing.T) {
	ctx := context.Background()
	s, root := newRootService(t)
	steps := []struct {
		keyType string
		want    crypto.KeyType
	}{
		{"ChaCha20", crypto.ChaCha20}, // version 1
		{"", crypto.ChaCha20},
		{"AES256", crypto.AES256},
		{"", crypto.AES256},
	}
	for i, step := range steps {
		if err := s.CreateKey(ctx, root, "", "k", step.keyType, i > 0); err != nil {
			t.Fatal(err)
		}
		kv, err := s.KeyStatus(root, "", "k", 0)
		if err != nil || kv.Type() != step.want || kv.Version != uint32(i+1) {
			t.Errorf("version %d with type %q: %s (version %d), %v; want %s", i+1, step.keyType, kv.Type(), kv.Version, err, step.want)
		}
	}
}
