package service

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/state"
	"github.com/keep-kms/keep/internal/usage"
)

// TestUsageForce counts a decrypt of version 1, reports it, and finds it in
// KeyInfo; deleting or disabling version 1 (or all versions) then needs
// force, version 2, which only generated, does not.
func TestUsageForce(t *testing.T) {
	ctx := context.Background()
	s, root := newRootService(t)
	if err := s.CreateKey(ctx, root, "", "k", "", false); err != nil {
		t.Fatal(err)
	}
	_, _, ct, err := s.GenerateKey(root, "", "k", 0, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Decrypt(root, "", "k", 0, ct, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateKey(ctx, root, "", "k", "", true); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.GenerateKey(root, "", "k", 0, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decrypt(root, "", "k", 0, []byte("not a ciphertext"), nil); err == nil {
		t.Fatal("decrypted garbage")
	}
	if err := usage.NewReporter(s.state.UsageCounters, s.ReportUsage).Flush(ctx); err != nil {
		t.Fatal(err)
	}

	info, err := s.KeyInfo(root, "", "k")
	if err != nil {
		t.Fatal(err)
	}
	if u := info.Usage[0]; u.Decrypts30d != 3 || u.Generates30d != 1 || u.LastDecrypt.IsZero() || u.LastGenerate.IsZero() {
		t.Errorf("usage of version 1 = %+v, want 3 decrypts and 1 generate", u)
	}
	if u := info.Usage[1]; u.Decrypts30d != 0 || u.Generates30d != 1 || !u.LastDecrypt.IsZero() {
		t.Errorf("usage of version 2 = %+v, want 1 generate", u)
	}

	inUse := "key version is in use: version 1 of key k decrypted 3 times in the last 30 days, last at "
	for _, tt := range []struct {
		name string
		do   func(force bool) error
	}{
		{"disable all", func(force bool) error {
			_, err := s.SetKeyDisabled(ctx, root, "", "k", 0, true, true, force)
			return err
		}},
		{"delete version 1", func(force bool) error {
			_, err := s.ScheduleKeyDeletion(ctx, root, "", "k", 1, false, nil, force)
			return err
		}},
	} {
		err := tt.do(false)
		if !errors.Is(err, state.ErrKeyInUse) || !strings.HasPrefix(err.Error(), inUse) || !strings.HasSuffix(err.Error(), "; add --force") {
			t.Errorf("%s without force: %v", tt.name, err)
		}
		if err := tt.do(true); err != nil {
			t.Errorf("%s with force: %v", tt.name, err)
		}
	}
	// Version 1 is disabled and pending deletion, version 2 disabled: they
	// are left as they are, so nothing needs force now.
	if _, err := s.ScheduleKeyDeletion(ctx, root, "", "k", 0, true, nil, false); err != nil {
		t.Errorf("delete all, the used version already pending: %v", err)
	}
	if _, err := s.SetKeyDisabled(ctx, root, "", "k", 0, true, true, false); err != nil {
		t.Errorf("disable all, every version disabled already: %v", err)
	}
	// Enabling needs no force.
	if _, err := s.SetKeyDisabled(ctx, root, "", "k", 0, true, false, false); err != nil {
		t.Errorf("enable: %v", err)
	}
	// Version 2 only generated: deleting it needs no force.
	if _, err := s.CancelKeyDeletion(ctx, root, "", "k", 0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ScheduleKeyDeletion(ctx, root, "", "k", 2, false, nil, false); err != nil {
		t.Errorf("delete version 2, which decrypted nothing: %v", err)
	}
	// The APIs without force (KEY:DELETE, KES delete) are forced.
	if err := s.DeleteKey(ctx, root, "", "k", 1, false); err != nil {
		t.Errorf("DeleteKey of a used version: %v", err)
	}
}

// TestUsageKES counts the decryption of a ciphertext KES made, with the
// key version imported from KES; a decryption that fails counts nothing.
func TestUsageKES(t *testing.T) {
	ctx := context.Background()
	files, vectors := kesFixture(t)
	s, root := newRootService(t)
	v := vectors.Vectors[0]
	if _, err := s.ImportKES(ctx, root, "", v.Key, files[v.Key], false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decrypt(root, "", v.Key, 0, v.Ciphertext, v.Context); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Decrypt(root, "", v.Key, 0, v.Ciphertext, append([]byte(v.Context), 'x')); err == nil {
		t.Fatal("decrypted with another context")
	}
	if err := usage.NewReporter(s.state.UsageCounters, s.ReportUsage).Flush(ctx); err != nil {
		t.Fatal(err)
	}
	info, err := s.KeyInfo(root, "", v.Key)
	if err != nil {
		t.Fatal(err)
	}
	if u := info.Usage[0]; u.Decrypts30d != 1 || u.LastDecrypt.IsZero() {
		t.Errorf("usage of the imported version = %+v, want 1 decrypt", u)
	}
}
