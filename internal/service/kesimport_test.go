package service

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/kesformat"
	"github.com/keep-kms/keep/internal/state"
	"github.com/keep-kms/keep/test/kesfixture"
	"github.com/keep-kms/keep/test/testnode"
)

// kesFixture reads the key files and vectors of the KES fixture set.
func kesFixture(t *testing.T) (map[string][]byte, *kesfixture.Vectors) {
	t.Helper()
	dir := testnode.KESFixtureDir(t)
	files := map[string][]byte{}
	for _, f := range kesfixture.KeyFiles(t, dir) {
		files[f.Name] = f.Content
	}
	return files, kesfixture.LoadVectors(t, dir)
}

// TestImportKES imports every key of a KES keystore, then checks that every
// ciphertext KES made decrypts, that KES's HMACs are computed alike, that
// both survive a rotation and a restore from a snapshot, and that a second
// import changes nothing.
func TestImportKES(t *testing.T) {
	ctx := context.Background()
	files, vectors := kesFixture(t)
	s, root := newRootService(t)

	for name, file := range files {
		res, err := s.ImportKES(ctx, root, "", name, file, true)
		if err != nil || res.Status != KESNew {
			t.Fatalf("dry run of %s: %+v, %v", name, res, err)
		}
		if _, err := s.KeyStatus(root, "", name, 0); !errors.Is(err, state.ErrKeyNotFound) {
			t.Fatalf("a dry run created key %s: %v", name, err)
		}
		if res, err = s.ImportKES(ctx, root, "", name, file, false); err != nil || res.Status != KESImported {
			t.Fatalf("import of %s: %+v, %v", name, res, err)
		}
	}
	check := func(when string, s *Service) {
		t.Helper()
		for _, v := range vectors.Vectors {
			got, err := s.Decrypt(root, "", v.Key, 0, v.Ciphertext, v.Context)
			if err != nil || !bytes.Equal(got, v.Plaintext) {
				t.Errorf("%s: vector %s: %x, %v", when, v.ID, got, err)
			}
			if _, err := s.Decrypt(root, "", v.Key, 1, v.Ciphertext, v.Context); err != nil {
				t.Errorf("%s: vector %s, version 1: %v", when, v.ID, err)
			}
			if _, err := s.Decrypt(root, "", v.Key, 0, v.Ciphertext, append(bytes.Clone(v.Context), 'x')); !errors.Is(err, crypto.ErrDecrypt) {
				t.Errorf("%s: vector %s with another context: %v, want %v", when, v.ID, err, crypto.ErrDecrypt)
			}
			for _, i := range []int{0, len(v.Ciphertext) / 2, len(v.Ciphertext) - 1} {
				tampered := bytes.Clone([]byte(v.Ciphertext))
				tampered[i] ^= 0x10
				if _, err := s.Decrypt(root, "", v.Key, 0, tampered, v.Context); !errors.Is(err, crypto.ErrDecrypt) {
					t.Errorf("%s: vector %s with byte %d changed: %v, want %v", when, v.ID, i, err, crypto.ErrDecrypt)
				}
			}
		}
		for _, h := range vectors.HMACVectors {
			got, err := s.HMAC(root, "", h.Key, h.Message)
			_, mac, macErr := s.MAC(root, "", h.Key, 1, h.Message)
			if h.ExpectedError != nil {
				if !errors.Is(err, kesformat.ErrNoHMACKey) || !errors.Is(macErr, kesformat.ErrNoHMACKey) {
					t.Errorf("%s: HMAC with key %s: %v and %v, want %v", when, h.Key, err, macErr, kesformat.ErrNoHMACKey)
				}
				continue
			}
			if err != nil || !bytes.Equal(got, h.HMAC) || macErr != nil || !bytes.Equal(mac, h.HMAC) {
				t.Errorf("%s: HMAC with key %s: %x (%v) and %x (%v), want %x", when, h.Key, got, err, mac, macErr, h.HMAC)
			}
		}
	}
	check("imported", s)

	for name, file := range files {
		if res, err := s.ImportKES(ctx, root, "", name, file, false); err != nil || res.Status != KESExists {
			t.Errorf("second import of %s: %+v, %v", name, res, err)
		}
		if err := s.CreateKey(ctx, root, "", name, "", true); err != nil {
			t.Fatalf("rotate %s: %v", name, err)
		}
		v, dek, ciphertext, err := s.GenerateKey(root, "", name, 0, []byte("ctx"), 0)
		if err != nil || v != 2 {
			t.Fatalf("generate with rotated %s: version %d, %v", name, v, err)
		}
		if got, err := s.Decrypt(root, "", name, 0, ciphertext, []byte("ctx")); err != nil || !bytes.Equal(got, dek) {
			t.Errorf("decrypt a Keep ciphertext of rotated %s: %v", name, err)
		}
		if res, err := s.ImportKES(ctx, root, "", name, file, false); err != nil || res.Status != KESExists {
			t.Errorf("import of rotated %s: %+v, %v", name, res, err)
		}
	}
	check("rotated", s)

	var snap bytes.Buffer
	if err := s.state.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if err := s.state.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	check("restored", s)
}

// TestImportKESRefused checks what an import never does: overwrite a key,
// take a damaged file, or import for a caller who may not.
func TestImportKESRefused(t *testing.T) {
	ctx := context.Background()
	files, _ := kesFixture(t)
	s, root := newRootService(t)
	var name string
	var file []byte
	for name, file = range files {
		break
	}
	if err := s.CreateKey(ctx, root, "", name, "", false); err != nil {
		t.Fatal(err)
	}
	other := name + "-2"
	tests := []struct {
		what   string
		caller Caller
		name   string
		file   []byte
		want   error
	}{
		{"name taken by a Keep key", root, name, file, state.ErrKeyExists},
		{"empty file", root, other, nil, state.ErrInvalidArgument},
		{"truncated file", root, other, file[:len(file)/2], state.ErrInvalidArgument},
		{"JSON without bytes", root, other, []byte(`{"algorithm":"AES256"}`), state.ErrInvalidArgument},
		{"unknown algorithm", root, other, []byte(`{"bytes":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","algorithm":"DES"}`), state.ErrInvalidArgument},
		{"invalid name", root, "a/b", file, state.ErrInvalidArgument},
		{"unknown caller", newCaller(t), other, file, ErrPermission},
	}
	for _, tt := range tests {
		for _, dryRun := range []bool{true, false} {
			_, err := s.ImportKES(ctx, tt.caller, "", tt.name, tt.file, dryRun)
			if !errors.Is(err, tt.want) {
				t.Errorf("%s (dry run %v): %v, want %v", tt.what, dryRun, err, tt.want)
			}
		}
	}
	if kv, err := s.KeyStatus(root, "", name, 0); err != nil || kv.KES != nil || kv.Version != 1 {
		t.Errorf("the Keep key %s changed: %+v, %v", name, kv, err)
	}
	if _, err := s.KeyStatus(root, "", other, 0); !errors.Is(err, state.ErrKeyNotFound) {
		t.Errorf("a refused import left key %s: %v", other, err)
	}
}
