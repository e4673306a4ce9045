package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/proto"

	"github.com/keep-kms/keep/test/testnode"
)

// encrypt sends KEY:ENCRYPT commands with Client.Send and decodes the reply
// itself: the pinned client's Encrypt expects reply frames numbered 204
// (spec §3.2), a server replies 205.
func encrypt(ctx context.Context, c *kms.Client, enclave string, reqs ...*kms.EncryptRequest) ([]*kms.EncryptResponse, error) {
	return sendEncryptFrames(ctx, c, enclave, cmds.KeyEncrypt, reqs...)
}

// sendEncryptFrames sends one frame of command cmd per request, each an
// EncryptRequest, and decodes the reply frames, which must carry cmd too,
// as EncryptResponses: KEY:ENCRYPT, and KEY:MAC (210), whose request and
// reply are wire-identical to them and which the pinned client lacks.
func sendEncryptFrames(ctx context.Context, c *kms.Client, enclave string, cmd cmds.Command, reqs ...*kms.EncryptRequest) ([]*kms.EncryptResponse, error) {
	var body []byte
	for _, r := range reqs {
		var err error
		if body, err = cmds.Encode(body, cmd, r); err != nil {
			return nil, err
		}
	}
	resp, err := c.Send(ctx, &kms.Request{Enclave: enclave, Body: body})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength != int64(len(b)) {
		return nil, fmt.Errorf("Content-Length %d, body %d bytes", resp.ContentLength, len(b))
	}
	frames, err := parseFrames(b)
	if err != nil {
		return nil, err
	}
	if len(frames) != len(reqs) {
		return nil, fmt.Errorf("%d reply frames for %d requests", len(frames), len(reqs))
	}
	out := make([]*kms.EncryptResponse, 0, len(frames))
	for _, f := range frames {
		if f.Cmd != cmd {
			return nil, fmt.Errorf("reply frame carries command %d, want %d", f.Cmd, cmd)
		}
		var m pb.EncryptResponse
		if err := proto.Unmarshal(f.Payload, &m); err != nil {
			return nil, err
		}
		var r kms.EncryptResponse
		if err := r.UnmarshalPB(&m); err != nil {
			return nil, err
		}
		out = append(out, &r)
	}
	return out, nil
}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func keyNames(items []kms.KeyStatusResponse) []string {
	var s []string
	for _, k := range items {
		s = append(s, k.Name)
	}
	return s
}

func listAllKeys(t testing.TB, ctx context.Context, c *kms.Client, enclave, prefix string, limit int) []kms.KeyStatusResponse {
	t.Helper()
	iter := kms.Iter[kms.KeyStatusResponse]{NextFn: c.ListKeys}
	var all []kms.KeyStatusResponse
	for k, err := iter.SeekTo(ctx, &kms.ListRequest{Enclave: enclave, Prefix: prefix, Limit: limit}); ; k, err = iter.Next(ctx) {
		if err == io.EOF {
			break
		}
		noErr(t, err, "list keys")
		all = append(all, k)
		if len(all) > 100000 {
			t.Fatal("list keys does not end")
		}
	}
	return all
}

// TestAPI exercises every command of the MinIO KMS API through the official
// client against one node.
func TestAPI(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	n.DeleteAtOnce(t) // these tests are of the deletions themselves
	c := n.RootClient(t)
	ctx := ctxT(t)
	rootID := n.Root.Identity()

	t.Run("Version", func(t *testing.T) {
		vs, err := c.Version(ctx, &kms.VersionRequest{})
		noErr(t, err, "Version")
		if len(vs) != 1 {
			t.Fatalf("Version: %d replies, want 1", len(vs))
		}
		v := vs[0]
		if v.APIVersion != "v1" {
			t.Errorf("Version: api_version %q, want v1", v.APIVersion)
		}
		if v.Version == "" {
			t.Errorf("Version: empty version")
		}
		if v.Host != n.Addr {
			t.Errorf("Version: host %q, want the --host value %q", v.Host, n.Addr)
		}
	})

	t.Run("Health", func(t *testing.T) {
		noErr(t, c.Live(ctx, &kms.LivenessRequest{}), "Live")
		noErr(t, c.Ready(ctx, &kms.ReadinessRequest{}), "Ready")
		noErr(t, c.Ready(ctx, &kms.ReadinessRequest{Write: true}), "Ready?write")
	})

	t.Run("Enclaves", func(t *testing.T) {
		page, err := c.ListEnclaves(ctx, &kms.ListRequest{})
		noErr(t, err, "ListEnclaves")
		var names []string
		for _, e := range page.Items {
			names = append(names, e.Name)
		}
		if !slices.Contains(names, "default") {
			t.Errorf("ListEnclaves = %v, want it to contain the enclave 'default'", names)
		}

		before := time.Now().Add(-time.Minute)
		noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "enc-1"}), "CreateEnclave enc-1")
		noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "enc-2"}), "CreateEnclave enc-2")
		errIs(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "enc-1"}), kms.ErrEnclaveExists, "CreateEnclave enc-1 again")

		st, err := c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "enc-1"}, &kms.EnclaveStatusRequest{Name: "enc-2"})
		noErr(t, err, "EnclaveStatus enc-1 enc-2")
		if len(st) != 2 || st[0].Name != "enc-1" || st[1].Name != "enc-2" {
			t.Fatalf("EnclaveStatus batch: got %+v", st)
		}
		for _, s := range st {
			if s.CreatedBy != rootID {
				t.Errorf("EnclaveStatus %s: created_by %v, want root %v", s.Name, s.CreatedBy, rootID)
			}
			if s.CreatedAt.Before(before) || s.CreatedAt.After(time.Now().Add(time.Minute)) {
				t.Errorf("EnclaveStatus %s: created_at %v is not about now", s.Name, s.CreatedAt)
			}
		}
		_, err = c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "enc-1"}, &kms.EnclaveStatusRequest{Name: "enc-missing"})
		errIs(t, err, kms.ErrEnclaveNotFound, "EnclaveStatus batch with a missing enclave")

		page, err = c.ListEnclaves(ctx, &kms.ListRequest{Prefix: "enc-"})
		noErr(t, err, "ListEnclaves enc-")
		names = names[:0]
		for _, e := range page.Items {
			names = append(names, e.Name)
		}
		if !slices.Equal(names, []string{"enc-1", "enc-2"}) || page.ContinueAt != "" {
			t.Errorf("ListEnclaves prefix enc-: %v continue_at %q, want [enc-1 enc-2] and \"\"", names, page.ContinueAt)
		}
		page, err = c.ListEnclaves(ctx, &kms.ListRequest{Prefix: "enc-", Limit: 1})
		noErr(t, err, "ListEnclaves enc- limit 1")
		if len(page.Items) != 1 || page.Items[0].Name != "enc-1" || page.ContinueAt != "enc-2" {
			t.Errorf("ListEnclaves prefix enc- limit 1: %+v continue_at %q, want [enc-1] and enc-2", page.Items, page.ContinueAt)
		}

		// Keys do not survive their enclave.
		noErr(t, c.CreateKey(ctx, "enc-2", &kms.CreateKeyRequest{Name: "k"}), "CreateKey in enc-2")
		noErr(t, c.DeleteEnclave(ctx, &kms.DeleteEnclaveRequest{Name: "enc-2"}), "DeleteEnclave enc-2")
		errIs(t, c.DeleteEnclave(ctx, &kms.DeleteEnclaveRequest{Name: "enc-2"}), kms.ErrEnclaveNotFound, "DeleteEnclave enc-2 again")
		errIs(t, c.CreateKey(ctx, "enc-2", &kms.CreateKeyRequest{Name: "k2"}), kms.ErrEnclaveNotFound, "CreateKey in deleted enclave")
		_, err = c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "enc-2"})
		errIs(t, err, kms.ErrEnclaveNotFound, "EnclaveStatus of deleted enclave")
		noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "enc-2"}), "CreateEnclave enc-2 again")
		_, err = c.KeyStatus(ctx, "enc-2", &kms.KeyStatusRequest{Name: "k"})
		errIs(t, err, kms.ErrKeyNotFound, "KeyStatus of a key of a deleted and re-created enclave")
	})

	t.Run("DefaultEnclave", func(t *testing.T) {
		noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "in-default"}), "CreateKey without enclave")
		st, err := c.KeyStatus(ctx, "default", &kms.KeyStatusRequest{Name: "in-default"})
		noErr(t, err, "KeyStatus in 'default' of a key created without enclave")
		if st[0].Name != "in-default" {
			t.Errorf("KeyStatus: name %q", st[0].Name)
		}
		page, err := c.ListKeys(ctx, &kms.ListRequest{Prefix: "in-default"})
		noErr(t, err, "ListKeys without enclave")
		if !slices.Equal(keyNames(page.Items), []string{"in-default"}) {
			t.Errorf("ListKeys without enclave: %v, want [in-default]", keyNames(page.Items))
		}
		// The same name in another enclave is another key.
		noErr(t, c.CreateKey(ctx, "enc-1", &kms.CreateKeyRequest{Name: "in-default"}), "CreateKey same name in enc-1")
	})

	t.Run("CreateKeyTypes", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			typ  kms.SecretKeyType
			want kms.SecretKeyType
		}{
			{"type-aes", kms.AES256, kms.AES256},
			{"type-chacha", kms.ChaCha20, kms.ChaCha20},
			{"type-default", 0, kms.AES256},
		} {
			noErr(t, c.CreateKey(ctx, "enc-1", &kms.CreateKeyRequest{Name: tc.name, Type: tc.typ}), "CreateKey "+tc.name)
			st, err := c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: tc.name})
			noErr(t, err, "KeyStatus "+tc.name)
			s := st[0]
			if s.Name != tc.name || s.Version != 1 || s.Type != tc.want || s.CreatedBy != rootID {
				t.Errorf("KeyStatus %s = {name %q version %d type %v created_by %v}, want {%q 1 %v %v}",
					tc.name, s.Name, s.Version, s.Type, s.CreatedBy, tc.name, tc.want, rootID)
			}
			errIs(t, c.CreateKey(ctx, "enc-1", &kms.CreateKeyRequest{Name: tc.name, Type: tc.typ}), kms.ErrKeyExists, "CreateKey "+tc.name+" again")
		}
		st, err := c.KeyStatus(ctx, "enc-1",
			&kms.KeyStatusRequest{Name: "type-aes"}, &kms.KeyStatusRequest{Name: "type-chacha"}, &kms.KeyStatusRequest{Name: "type-default"})
		noErr(t, err, "KeyStatus batch of 3")
		if len(st) != 3 || st[0].Name != "type-aes" || st[1].Name != "type-chacha" || st[2].Name != "type-default" {
			t.Errorf("KeyStatus batch: got %d replies %v", len(st), st)
		}
	})

	t.Run("GenerateDecrypt", func(t *testing.T) {
		for _, key := range []string{"type-aes", "type-chacha"} {
			aad := []byte(`{"bucket":"bucket/object"}`)
			g, err := c.GenerateKey(ctx, "enc-1", &kms.GenerateKeyRequest{Name: key, AssociatedData: aad})
			noErr(t, err, "GenerateKey "+key)
			if len(g) != 1 || len(g[0].Plaintext) != 32 || g[0].Version != 1 || len(g[0].Ciphertext) == 0 {
				t.Fatalf("GenerateKey %s: %d replies, plaintext %d bytes, version %d", key, len(g), len(g[0].Plaintext), g[0].Version)
			}
			if bytes.Contains(g[0].Ciphertext, g[0].Plaintext) {
				t.Errorf("GenerateKey %s: ciphertext contains the plaintext", key)
			}
			d, err := c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: g[0].Ciphertext, AssociatedData: aad})
			noErr(t, err, "Decrypt "+key)
			if !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
				t.Errorf("Decrypt %s: plaintext differs from the generated one", key)
			}
			d, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Version: 1, Ciphertext: g[0].Ciphertext, AssociatedData: aad})
			noErr(t, err, "Decrypt "+key+" version 1")
			if !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
				t.Errorf("Decrypt %s version 1: plaintext differs from the generated one", key)
			}

			// Associated data must match byte for byte.
			bad := bytes.Clone(aad)
			bad[len(bad)-2] ^= 1
			_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: g[0].Ciphertext, AssociatedData: bad})
			errIs(t, err, kms.ErrDecrypt, "Decrypt "+key+" with associated data differing by one bit")
			_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: g[0].Ciphertext, AssociatedData: append(bytes.Clone(aad), ' ')})
			errIs(t, err, kms.ErrDecrypt, "Decrypt "+key+" with one byte more associated data")
			_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: g[0].Ciphertext})
			errIs(t, err, kms.ErrDecrypt, "Decrypt "+key+" without associated data")

			// Every byte of the ciphertext is authenticated.
			for _, i := range []int{0, 1, 5, len(g[0].Ciphertext) / 2, len(g[0].Ciphertext) - 1} {
				ct := bytes.Clone(g[0].Ciphertext)
				ct[i] ^= 0x01
				_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: ct, AssociatedData: aad})
				if errors.Is(err, kms.ErrKeyNotFound) {
					continue // a flipped version byte may name a version that does not exist
				}
				errIs(t, err, kms.ErrDecrypt, fmt.Sprintf("Decrypt %s with byte %d of the ciphertext flipped", key, i))
			}
			_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: g[0].Ciphertext[:len(g[0].Ciphertext)-1], AssociatedData: aad})
			errIs(t, err, kms.ErrDecrypt, "Decrypt "+key+" truncated ciphertext")
			_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: []byte("garbage"), AssociatedData: aad})
			errIs(t, err, kms.ErrDecrypt, "Decrypt "+key+" garbage ciphertext")
		}

		// A ciphertext of one key does not decrypt under another.
		g, err := c.GenerateKey(ctx, "enc-1", &kms.GenerateKeyRequest{Name: "type-aes"})
		noErr(t, err, "GenerateKey type-aes")
		_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: "type-default", Ciphertext: g[0].Ciphertext})
		errIs(t, err, kms.ErrDecrypt, "Decrypt a type-aes ciphertext with key type-default")
		_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: "type-chacha", Ciphertext: g[0].Ciphertext})
		errIs(t, err, kms.ErrDecrypt, "Decrypt a type-aes ciphertext with key type-chacha")
	})

	t.Run("GenerateLength", func(t *testing.T) {
		for _, tc := range []struct{ length, want int }{{0, 32}, {1, 1}, {16, 16}, {32, 32}, {64, 64}, {1024, 1024}} {
			g, err := c.GenerateKey(ctx, "enc-1", &kms.GenerateKeyRequest{Name: "type-aes", Length: tc.length})
			noErr(t, err, fmt.Sprintf("GenerateKey length %d", tc.length))
			if len(g[0].Plaintext) != tc.want {
				t.Errorf("GenerateKey length %d: %d bytes, want %d", tc.length, len(g[0].Plaintext), tc.want)
			}
			d, err := c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: "type-aes", Ciphertext: g[0].Ciphertext})
			noErr(t, err, fmt.Sprintf("Decrypt of length %d", tc.length))
			if !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
				t.Errorf("Decrypt of length %d: plaintext differs", tc.length)
			}
		}
		_, err := c.GenerateKey(ctx, "enc-1", &kms.GenerateKeyRequest{Name: "type-aes", Length: 1025})
		errStatus(t, err, http.StatusBadRequest, "GenerateKey length 1025")
		_, err = c.GenerateKey(ctx, "enc-1", &kms.GenerateKeyRequest{Name: "type-aes", Length: 1 << 20})
		errStatus(t, err, http.StatusBadRequest, "GenerateKey length 1 MiB")
	})

	t.Run("Batches", func(t *testing.T) {
		const N = 100
		reqs := make([]*kms.GenerateKeyRequest, N)
		for i := range reqs {
			key := "type-aes"
			if i%2 == 1 {
				key = "type-chacha"
			}
			reqs[i] = &kms.GenerateKeyRequest{Name: key, AssociatedData: fmt.Appendf(nil, "object-%d", i), Length: 32 + i%3}
		}
		gs, err := c.GenerateKey(ctx, "enc-1", reqs...)
		noErr(t, err, "GenerateKey batch of 100")
		if len(gs) != N {
			t.Fatalf("GenerateKey batch of %d: %d replies", N, len(gs))
		}
		seenP, seenC := map[string]bool{}, map[string]bool{}
		dreqs := make([]*kms.DecryptRequest, N)
		for i, g := range gs {
			if len(g.Plaintext) != reqs[i].Length {
				t.Errorf("batch reply %d: %d bytes, want %d (replies out of order?)", i, len(g.Plaintext), reqs[i].Length)
			}
			if seenP[string(g.Plaintext)] || seenC[string(g.Ciphertext)] {
				t.Errorf("batch reply %d: repeated plaintext or ciphertext", i)
			}
			seenP[string(g.Plaintext)], seenC[string(g.Ciphertext)] = true, true
			dreqs[i] = &kms.DecryptRequest{Name: reqs[i].Name, Ciphertext: g.Ciphertext, AssociatedData: reqs[i].AssociatedData}
		}
		ds, err := c.Decrypt(ctx, "enc-1", dreqs...)
		noErr(t, err, "Decrypt batch of 100")
		if len(ds) != N {
			t.Fatalf("Decrypt batch of %d: %d replies", N, len(ds))
		}
		for i := range ds {
			if !bytes.Equal(ds[i].Plaintext, gs[i].Plaintext) {
				t.Errorf("Decrypt batch reply %d: plaintext differs", i)
			}
		}

		// A big batch.
		big := make([]*kms.GenerateKeyRequest, 2000)
		for i := range big {
			big[i] = &kms.GenerateKeyRequest{Name: "type-aes"}
		}
		gs, err = c.GenerateKey(ctx, "enc-1", big...)
		noErr(t, err, "GenerateKey batch of 2000")
		if len(gs) != len(big) {
			t.Errorf("GenerateKey batch of 2000: %d replies", len(gs))
		}

		// One missing key fails the whole request.
		bad := slices.Clone(reqs[:10])
		bad = append(bad, &kms.GenerateKeyRequest{Name: "no-such-key"})
		bad = append(bad, reqs[10:20]...)
		_, err = c.GenerateKey(ctx, "enc-1", bad...)
		errIs(t, err, kms.ErrKeyNotFound, "GenerateKey batch with one missing key")
		dbad := slices.Clone(dreqs[:5])
		dbad = append(dbad, &kms.DecryptRequest{Name: "no-such-key", Ciphertext: gs[0].Ciphertext})
		_, err = c.Decrypt(ctx, "enc-1", dbad...)
		errIs(t, err, kms.ErrKeyNotFound, "Decrypt batch with one missing key")
		dbad = slices.Clone(dreqs[:5])
		dbad = append(dbad, &kms.DecryptRequest{Name: dreqs[7].Name, Ciphertext: dreqs[7].Ciphertext, AssociatedData: []byte("wrong")})
		_, err = c.Decrypt(ctx, "enc-1", dbad...)
		errIs(t, err, kms.ErrDecrypt, "Decrypt batch with one wrong associated data")
		_, err = c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: "type-aes"}, &kms.KeyStatusRequest{Name: "no-such-key"})
		errIs(t, err, kms.ErrKeyNotFound, "KeyStatus batch with one missing key")
	})

	t.Run("Encrypt", func(t *testing.T) {
		msgs := [][]byte{[]byte("hello"), {}, randBytes(t, 4096)}
		for _, key := range []string{"type-aes", "type-chacha"} {
			var reqs []*kms.EncryptRequest
			for i, m := range msgs {
				reqs = append(reqs, &kms.EncryptRequest{Name: key, Plaintext: m, AssociatedData: fmt.Appendf(nil, "ad-%d", i)})
			}
			es, err := encrypt(ctx, c, "enc-1", reqs...)
			noErr(t, err, "Encrypt batch "+key)
			for i, e := range es {
				if e.Version != 1 {
					t.Errorf("Encrypt %s: version %d, want 1", key, e.Version)
				}
				d, err := c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: e.Ciphertext, AssociatedData: reqs[i].AssociatedData})
				noErr(t, err, "Decrypt of Encrypt "+key)
				if !bytes.Equal(d[0].Plaintext, msgs[i]) {
					t.Errorf("Encrypt/Decrypt %s message %d: round trip differs", key, i)
				}
			}
		}
		_, err := encrypt(ctx, c, "enc-1", &kms.EncryptRequest{Name: "no-such-key", Plaintext: []byte("x")})
		errIs(t, err, kms.ErrKeyNotFound, "Encrypt with missing key")
	})

	t.Run("Rotation", func(t *testing.T) {
		const key = "rotate"
		noErr(t, c.CreateKey(ctx, "enc-1", &kms.CreateKeyRequest{Name: key}), "CreateKey rotate")
		aad := []byte("rotation")
		deks := map[int]*kms.GenerateKeyResponse{}
		for v := 1; v <= 3; v++ {
			if v > 1 {
				noErr(t, c.CreateKey(ctx, "enc-1", &kms.CreateKeyRequest{Name: key, AddVersion: true}), fmt.Sprintf("CreateKey add_version → v%d", v))
			}
			st, err := c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: key})
			noErr(t, err, "KeyStatus rotate")
			if st[0].Version != v {
				t.Fatalf("after %d rotations KeyStatus version = %d, want %d", v-1, st[0].Version, v)
			}
			g, err := c.GenerateKey(ctx, "enc-1", &kms.GenerateKeyRequest{Name: key, AssociatedData: aad})
			noErr(t, err, "GenerateKey rotate")
			if g[0].Version != v {
				t.Errorf("GenerateKey under v%d: reply version %d", v, g[0].Version)
			}
			deks[v] = g[0]
		}
		for v := 1; v <= 3; v++ {
			st, err := c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: key, Version: v})
			noErr(t, err, fmt.Sprintf("KeyStatus version %d", v))
			if st[0].Version != v {
				t.Errorf("KeyStatus version %d: got version %d", v, st[0].Version)
			}
		}
		_, err := c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: key, Version: 9})
		errIs(t, err, kms.ErrKeyNotFound, "KeyStatus version 9 of a key with 3 versions")

		// Version 0 decrypts data keys made under every version.
		var reqs []*kms.DecryptRequest
		for v := 1; v <= 3; v++ {
			reqs = append(reqs, &kms.DecryptRequest{Name: key, Version: 0, Ciphertext: deks[v].Ciphertext, AssociatedData: aad})
		}
		ds, err := c.Decrypt(ctx, "enc-1", reqs...)
		noErr(t, err, "Decrypt version 0 of DEKs made under v1, v2, v3")
		for i, d := range ds {
			if !bytes.Equal(d.Plaintext, deks[i+1].Plaintext) {
				t.Errorf("Decrypt version 0 of the v%d DEK: plaintext differs", i+1)
			}
		}
		for v := 1; v <= 3; v++ {
			d, err := c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Version: v, Ciphertext: deks[v].Ciphertext, AssociatedData: aad})
			noErr(t, err, fmt.Sprintf("Decrypt version %d of the v%d DEK", v, v))
			if !bytes.Equal(d[0].Plaintext, deks[v].Plaintext) {
				t.Errorf("Decrypt version %d: plaintext differs", v)
			}
		}
		// Generate under an older version.
		g, err := c.GenerateKey(ctx, "enc-1", &kms.GenerateKeyRequest{Name: key, Version: 1})
		noErr(t, err, "GenerateKey version 1")
		if g[0].Version != 1 {
			t.Errorf("GenerateKey version 1: reply version %d", g[0].Version)
		}
		d, err := c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: g[0].Ciphertext})
		noErr(t, err, "Decrypt version 0 of a DEK made with version 1 after rotations")
		if !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
			t.Errorf("Decrypt: plaintext differs")
		}

		// Delete version 2: its DEKs fail, the others still work.
		noErr(t, c.DeleteKey(ctx, "enc-1", &kms.DeleteKeyRequest{Name: key, Version: 2}), "DeleteKey version 2")
		_, err = c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: key, Version: 2})
		errIs(t, err, kms.ErrKeyNotFound, "KeyStatus of deleted version 2")
		_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: deks[2].Ciphertext, AssociatedData: aad})
		if !errors.Is(err, kms.ErrKeyNotFound) && !errors.Is(err, kms.ErrDecrypt) {
			t.Errorf("Decrypt of a DEK of deleted version 2: got %s, want 404 key does not exist or 400 invalid ciphertext", testnode.DescribeErr(err))
		}
		for _, v := range []int{1, 3} {
			d, err := c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: deks[v].Ciphertext, AssociatedData: aad})
			noErr(t, err, fmt.Sprintf("Decrypt of v%d DEK after deleting v2", v))
			if !bytes.Equal(d[0].Plaintext, deks[v].Plaintext) {
				t.Errorf("Decrypt of v%d DEK after deleting v2: plaintext differs", v)
			}
		}
		errIs(t, c.DeleteKey(ctx, "enc-1", &kms.DeleteKeyRequest{Name: key, Version: 2}), kms.ErrKeyNotFound, "DeleteKey version 2 again")

		// Delete the latest (version 0 = latest = 3); numbers are never reused.
		noErr(t, c.DeleteKey(ctx, "enc-1", &kms.DeleteKeyRequest{Name: key}), "DeleteKey latest")
		st, err := c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: key})
		noErr(t, err, "KeyStatus after deleting v2 and v3")
		if st[0].Version != 1 {
			t.Errorf("KeyStatus after deleting v2 and v3: version %d, want 1", st[0].Version)
		}
		noErr(t, c.CreateKey(ctx, "enc-1", &kms.CreateKeyRequest{Name: key, AddVersion: true}), "CreateKey add_version after deletes")
		st, err = c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: key})
		noErr(t, err, "KeyStatus after re-adding a version")
		if st[0].Version != 4 {
			t.Errorf("add_version after deleting v2 and v3: version %d, want 4 (removed version numbers are never reused)", st[0].Version)
		}
		_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: deks[3].Ciphertext, AssociatedData: aad})
		if !errors.Is(err, kms.ErrKeyNotFound) && !errors.Is(err, kms.ErrDecrypt) {
			t.Errorf("Decrypt of a DEK of deleted version 3 after adding v4: got %s, want 404 or 400", testnode.DescribeErr(err))
		}

		// Delete all versions.
		noErr(t, c.DeleteKey(ctx, "enc-1", &kms.DeleteKeyRequest{Name: key, AllVersions: true}), "DeleteKey all_versions")
		_, err = c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: key})
		errIs(t, err, kms.ErrKeyNotFound, "KeyStatus after DeleteKey all_versions")
		errIs(t, c.DeleteKey(ctx, "enc-1", &kms.DeleteKeyRequest{Name: key, AllVersions: true}), kms.ErrKeyNotFound, "DeleteKey all_versions again")
		_, err = c.GenerateKey(ctx, "enc-1", &kms.GenerateKeyRequest{Name: key})
		errIs(t, err, kms.ErrKeyNotFound, "GenerateKey after DeleteKey all_versions")
		// A new key of the same name does not open the old data keys.
		noErr(t, c.CreateKey(ctx, "enc-1", &kms.CreateKeyRequest{Name: key}), "CreateKey again after delete")
		_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: key, Ciphertext: deks[1].Ciphertext, AssociatedData: aad})
		if err == nil {
			t.Errorf("Decrypt of an old DEK with a new key of the same name succeeded")
		}
	})

	t.Run("Import", func(t *testing.T) {
		for _, typ := range []kms.SecretKeyType{kms.AES256, kms.ChaCha20} {
			material := randBytes(t, 32)
			a, b, other := "imp-"+typ.String()+"-a", "imp-"+typ.String()+"-b", "imp-"+typ.String()+"-other"
			noErr(t, c.ImportKey(ctx, "enc-1", &kms.ImportKeyRequest{Name: a, Type: typ, Key: material}), "ImportKey "+a)
			noErr(t, c.ImportKey(ctx, "enc-1", &kms.ImportKeyRequest{Name: b, Type: typ, Key: material}), "ImportKey "+b)
			noErr(t, c.ImportKey(ctx, "enc-1", &kms.ImportKeyRequest{Name: other, Type: typ, Key: randBytes(t, 32)}), "ImportKey "+other)
			errIs(t, c.ImportKey(ctx, "enc-1", &kms.ImportKeyRequest{Name: a, Type: typ, Key: material}), kms.ErrKeyExists, "ImportKey "+a+" again")
			errIs(t, c.CreateKey(ctx, "enc-1", &kms.CreateKeyRequest{Name: a}), kms.ErrKeyExists, "CreateKey over imported key")

			st, err := c.KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: a})
			noErr(t, err, "KeyStatus "+a)
			if st[0].Type != typ || st[0].Version != 1 {
				t.Errorf("KeyStatus %s: type %v version %d, want %v 1", a, st[0].Type, st[0].Version, typ)
			}

			g, err := c.GenerateKey(ctx, "enc-1", &kms.GenerateKeyRequest{Name: a, AssociatedData: []byte("imp")})
			noErr(t, err, "GenerateKey "+a)
			d, err := c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: a, Ciphertext: g[0].Ciphertext, AssociatedData: []byte("imp")})
			noErr(t, err, "Decrypt "+a)
			if !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
				t.Errorf("Import %v round trip: plaintext differs", typ)
			}
			// The imported material is what encrypts: the same bytes imported
			// under another name open the ciphertext (the format binds key
			// type, version and associated data, not the key's name), other
			// bytes do not.
			d, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: b, Ciphertext: g[0].Ciphertext, AssociatedData: []byte("imp")})
			noErr(t, err, "Decrypt with the same key material imported under another name")
			if !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
				t.Errorf("Import %v: same material, other name: plaintext differs", typ)
			}
			_, err = c.Decrypt(ctx, "enc-1", &kms.DecryptRequest{Name: other, Ciphertext: g[0].Ciphertext, AssociatedData: []byte("imp")})
			errIs(t, err, kms.ErrDecrypt, "Decrypt with other imported key material")
		}
		for _, size := range []int{0, 16, 31, 33, 64} {
			err := c.ImportKey(ctx, "enc-1", &kms.ImportKeyRequest{Name: fmt.Sprintf("imp-bad-%d", size), Type: kms.AES256, Key: randBytes(t, size)})
			errStatus(t, err, http.StatusBadRequest, fmt.Sprintf("ImportKey with %d bytes", size))
		}
		errIs(t, c.ImportKey(ctx, "enc-missing", &kms.ImportKeyRequest{Name: "x", Type: kms.AES256, Key: randBytes(t, 32)}), kms.ErrEnclaveNotFound, "ImportKey into missing enclave")
	})

	t.Run("ListKeys", func(t *testing.T) {
		noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "list"}), "CreateEnclave list")
		var want []string
		for i := range 25 {
			name := fmt.Sprintf("page-%02d", i)
			want = append(want, name)
			noErr(t, c.CreateKey(ctx, "list", &kms.CreateKeyRequest{Name: name}), "CreateKey "+name)
		}
		noErr(t, c.CreateKey(ctx, "list", &kms.CreateKeyRequest{Name: "other"}), "CreateKey other")
		noErr(t, c.CreateKey(ctx, "list", &kms.CreateKeyRequest{Name: "page-05", AddVersion: true}), "rotate page-05")

		for _, tc := range []struct {
			continueAt string
			want       []string
			next       string
		}{
			{"", want[0:10], "page-10"},
			{"page-10", want[10:20], "page-20"},
			{"page-20", want[20:25], ""},
		} {
			p, err := c.ListKeys(ctx, &kms.ListRequest{Enclave: "list", Prefix: "page-", ContinueAt: tc.continueAt, Limit: 10})
			noErr(t, err, "ListKeys continue_at "+tc.continueAt)
			if got := keyNames(p.Items); !slices.Equal(got, tc.want) || p.ContinueAt != tc.next {
				t.Errorf("ListKeys prefix page- continue_at %q limit 10:\n got %v continue_at %q\nwant %v continue_at %q",
					tc.continueAt, got, p.ContinueAt, tc.want, tc.next)
			}
			for _, k := range p.Items {
				wantV := 1
				if k.Name == "page-05" {
					wantV = 2
				}
				if k.Version != wantV || k.Type != kms.AES256 {
					t.Errorf("ListKeys: %s version %d type %v, want version %d AES256", k.Name, k.Version, k.Type, wantV)
				}
			}
		}
		if got := keyNames(listAllKeys(t, ctx, c, "list", "page-", 7)); !slices.Equal(got, want) {
			t.Errorf("iterating ListKeys limit 7: %v, want %v", got, want)
		}
		if got := keyNames(listAllKeys(t, ctx, c, "list", "", 0)); !slices.Equal(got, append([]string{"other"}, want...)) {
			t.Errorf("ListKeys all: %v", got)
		}
		p, err := c.ListKeys(ctx, &kms.ListRequest{Enclave: "list", Prefix: "page-1"})
		noErr(t, err, "ListKeys prefix page-1")
		if got := keyNames(p.Items); !slices.Equal(got, want[10:20]) || p.ContinueAt != "" {
			t.Errorf("ListKeys prefix page-1: %v continue_at %q", got, p.ContinueAt)
		}
		p, err = c.ListKeys(ctx, &kms.ListRequest{Enclave: "list", Prefix: "nothing"})
		noErr(t, err, "ListKeys prefix nothing")
		if len(p.Items) != 0 || p.ContinueAt != "" {
			t.Errorf("ListKeys prefix nothing: %v continue_at %q", keyNames(p.Items), p.ContinueAt)
		}
		_, err = c.ListKeys(ctx, &kms.ListRequest{Enclave: "enc-missing"})
		errIs(t, err, kms.ErrEnclaveNotFound, "ListKeys in missing enclave")
	})

	t.Run("Policies", func(t *testing.T) {
		allow := map[cmds.Command]kms.RuleSet{
			cmds.KeyGenerate: {"minio-*": {}, "exact": {}},
			cmds.KeyDecrypt:  {"*": {}},
		}
		deny := map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: {"minio-secret": {}}}
		noErr(t, c.CreatePolicy(ctx, "enc-1", &kms.CreatePolicyRequest{Name: "pol-1", Allow: allow, Deny: deny}), "CreatePolicy pol-1")
		noErr(t, c.CreatePolicy(ctx, "enc-1", &kms.CreatePolicyRequest{Name: "pol-2", Allow: allow}), "CreatePolicy pol-2")

		ps, err := c.GetPolicy(ctx, "enc-1", &kms.PolicyRequest{Name: "pol-1"}, &kms.PolicyRequest{Name: "pol-2"})
		noErr(t, err, "GetPolicy pol-1 pol-2")
		if len(ps) != 2 || ps[0].Name != "pol-1" || ps[1].Name != "pol-2" {
			t.Fatalf("GetPolicy batch: %+v", ps)
		}
		if !equalRules(ps[0].Allow, allow) || !equalRules(ps[0].Deny, deny) {
			t.Errorf("GetPolicy pol-1: allow %v deny %v, want %v %v", ps[0].Allow, ps[0].Deny, allow, deny)
		}
		if ps[0].CreatedBy != rootID {
			t.Errorf("GetPolicy pol-1: created_by %v", ps[0].CreatedBy)
		}
		if len(ps[1].Deny) != 0 {
			t.Errorf("GetPolicy pol-2: deny %v, want none", ps[1].Deny)
		}
		ss, err := c.PolicyStatus(ctx, "enc-1", &kms.PolicyRequest{Name: "pol-1"}, &kms.PolicyRequest{Name: "pol-2"})
		noErr(t, err, "PolicyStatus")
		if len(ss) != 2 || ss[0].Name != "pol-1" || ss[1].Name != "pol-2" || ss[0].CreatedBy != rootID || ss[0].CreatedAt.IsZero() {
			t.Errorf("PolicyStatus batch: %+v", ss)
		}
		_, err = c.PolicyStatus(ctx, "enc-1", &kms.PolicyRequest{Name: "pol-1"}, &kms.PolicyRequest{Name: "pol-missing"})
		errIs(t, err, kms.ErrPolicyNotFound, "PolicyStatus batch with one missing policy")

		lp, err := c.ListPolicies(ctx, &kms.ListRequest{Enclave: "enc-1", Prefix: "pol-"})
		noErr(t, err, "ListPolicies")
		var names []string
		for _, p := range lp.Items {
			names = append(names, p.Name)
		}
		if !slices.Equal(names, []string{"pol-1", "pol-2"}) {
			t.Errorf("ListPolicies: %v", names)
		}
		lp, err = c.ListPolicies(ctx, &kms.ListRequest{Enclave: "enc-1", Prefix: "pol-", Limit: 1})
		noErr(t, err, "ListPolicies limit 1")
		if len(lp.Items) != 1 || lp.Items[0].Name != "pol-1" || lp.ContinueAt != "pol-2" {
			t.Errorf("ListPolicies limit 1: %+v continue_at %q", lp.Items, lp.ContinueAt)
		}

		// Create overwrites.
		allow2 := map[cmds.Command]kms.RuleSet{cmds.KeyStatus: {"*": {}}}
		noErr(t, c.CreatePolicy(ctx, "enc-1", &kms.CreatePolicyRequest{Name: "pol-2", Allow: allow2}), "CreatePolicy pol-2 again")
		ps, err = c.GetPolicy(ctx, "enc-1", &kms.PolicyRequest{Name: "pol-2"})
		noErr(t, err, "GetPolicy pol-2")
		if !equalRules(ps[0].Allow, allow2) {
			t.Errorf("GetPolicy pol-2 after overwrite: allow %v, want %v", ps[0].Allow, allow2)
		}

		noErr(t, c.DeletePolicy(ctx, "enc-1", &kms.DeletePolicyRequest{Name: "pol-2"}), "DeletePolicy pol-2")
		errIs(t, c.DeletePolicy(ctx, "enc-1", &kms.DeletePolicyRequest{Name: "pol-2"}), kms.ErrPolicyNotFound, "DeletePolicy pol-2 again")
		_, err = c.GetPolicy(ctx, "enc-1", &kms.PolicyRequest{Name: "pol-2"})
		errIs(t, err, kms.ErrPolicyNotFound, "GetPolicy of deleted policy")
		// Policies are per enclave.
		_, err = c.GetPolicy(ctx, "default", &kms.PolicyRequest{Name: "pol-1"})
		errIs(t, err, kms.ErrPolicyNotFound, "GetPolicy pol-1 in another enclave")
	})

	t.Run("Identities", func(t *testing.T) {
		user, admin, svc := testnode.NewAPIKey(t), testnode.NewAPIKey(t), testnode.NewAPIKey(t)
		tags := map[string]string{"team": "storage", "env": "test"}
		noErr(t, c.CreateIdentity(ctx, "enc-1", &kms.CreateIdentityRequest{Identity: user.Identity(), Privilege: kms.User, Tags: tags}), "CreateIdentity user")
		noErr(t, c.CreateIdentity(ctx, "enc-1", &kms.CreateIdentityRequest{Identity: admin.Identity(), Privilege: kms.Admin}), "CreateIdentity admin")
		noErr(t, c.AssignPolicy(ctx, "enc-1", &kms.AssignPolicyRequest{Identity: user.Identity(), Policy: "pol-1"}), "AssignPolicy pol-1 → user")

		ids, err := c.GetIdentity(ctx, "enc-1", &kms.IdentityRequest{Identity: user.Identity()}, &kms.IdentityRequest{Identity: admin.Identity()})
		noErr(t, err, "GetIdentity user admin")
		if len(ids) != 2 {
			t.Fatalf("GetIdentity batch: %d replies", len(ids))
		}
		u, a := ids[0], ids[1]
		if u.Identity != user.Identity() || u.Privilege != kms.User || u.Policy != "pol-1" || u.CreatedBy != rootID || !maps.Equal(u.Tags, tags) || u.IsServiceAccount {
			t.Errorf("GetIdentity user = %+v, want identity %v, User, policy pol-1, created_by root, tags %v", u, user.Identity(), tags)
		}
		if a.Identity != admin.Identity() || a.Privilege != kms.Admin || a.Policy != "" {
			t.Errorf("GetIdentity admin = %+v, want Admin without policy", a)
		}

		// Service accounts belong to their creator.
		ac := n.Client(t, admin)
		noErr(t, ac.CreateIdentity(ctx, "enc-1", &kms.CreateIdentityRequest{Identity: svc.Identity(), IsServiceAccount: true}), "admin creates a service account")
		ids, err = c.GetIdentity(ctx, "enc-1", &kms.IdentityRequest{Identity: admin.Identity()}, &kms.IdentityRequest{Identity: svc.Identity()})
		noErr(t, err, "GetIdentity admin svc")
		if !slices.Contains(ids[0].ServiceAccounts, svc.Identity()) {
			t.Errorf("GetIdentity admin: service_accounts %v, want to contain %v", ids[0].ServiceAccounts, svc.Identity())
		}
		if !ids[1].IsServiceAccount || ids[1].CreatedBy != admin.Identity() {
			t.Errorf("GetIdentity svc: is_service_account %v created_by %v, want true and the admin", ids[1].IsServiceAccount, ids[1].CreatedBy)
		}

		li, err := c.ListIdentities(ctx, &kms.ListRequest{Enclave: "enc-1"})
		noErr(t, err, "ListIdentities")
		var listed []mtls.Identity
		for _, i := range li.Items {
			listed = append(listed, i.Identity)
		}
		for _, id := range []mtls.Identity{user.Identity(), admin.Identity(), svc.Identity()} {
			if !slices.Contains(listed, id) {
				t.Errorf("ListIdentities: %v missing from %v", id, listed)
			}
		}
		li, err = c.ListIdentities(ctx, &kms.ListRequest{Enclave: "enc-1", Limit: 1})
		noErr(t, err, "ListIdentities limit 1")
		if len(li.Items) != 1 || li.ContinueAt == "" {
			t.Errorf("ListIdentities limit 1 of 3: %d items continue_at %q", len(li.Items), li.ContinueAt)
		}

		// Self status: empty identity = the caller.
		self, err := c.GetIdentity(ctx, "", &kms.IdentityRequest{})
		noErr(t, err, "GetIdentity self (root)")
		if self[0].Identity != rootID || self[0].Privilege != kms.SysAdmin {
			t.Errorf("GetIdentity self (root): identity %v privilege %v, want %v SysAdmin", self[0].Identity, self[0].Privilege, rootID)
		}

		// Delete takes the service accounts along.
		noErr(t, c.DeleteIdentity(ctx, "enc-1", &kms.DeleteIdentityRequest{Identity: admin.Identity()}), "DeleteIdentity admin")
		_, err = c.GetIdentity(ctx, "enc-1", &kms.IdentityRequest{Identity: admin.Identity()})
		errIs(t, err, kms.ErrIdentityNotFound, "GetIdentity of deleted admin")
		_, err = c.GetIdentity(ctx, "enc-1", &kms.IdentityRequest{Identity: svc.Identity()})
		errIs(t, err, kms.ErrIdentityNotFound, "GetIdentity of the service account of a deleted admin")
		errIs(t, c.DeleteIdentity(ctx, "enc-1", &kms.DeleteIdentityRequest{Identity: admin.Identity()}), kms.ErrIdentityNotFound, "DeleteIdentity admin again")
		_, err = n.Client(t, svc).KeyStatus(ctx, "enc-1", &kms.KeyStatusRequest{Name: "type-aes"})
		errIs(t, err, kms.ErrPermission, "service account of a deleted admin uses a key")

		// Identities are per enclave.
		_, err = c.GetIdentity(ctx, "default", &kms.IdentityRequest{Identity: user.Identity()})
		errIs(t, err, kms.ErrIdentityNotFound, "GetIdentity of an enc-1 identity in default")
	})
}

func equalRules(a, b map[cmds.Command]kms.RuleSet) bool {
	return maps.EqualFunc(a, b, func(x, y kms.RuleSet) bool { return maps.Equal(x, y) })
}
