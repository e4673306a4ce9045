package e2e

// The KES API (shared/specs/kes-api.md), driven with the official KES
// client (github.com/minio/kms-go/kes) and with raw HTTPS, on the same
// port and with the same identities as the MinIO KMS API.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kes"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/testnode"
)

// ---------------------------------------------------------------------------
// Helpers: the KES spellings of keys and identities, computed here and not
// by the server's code, and KES clients.

// kesIdentity spells an h1: identity as KES does: lowercase hex.
func kesIdentity(id mtls.Identity) kes.Identity {
	b, _ := id.MarshalBinary() // "h1:" and the 32 bytes of the SHA-256
	return kes.Identity(hex.EncodeToString(b[3:]))
}

// kesErrIs fails the test unless err is the KES error want, status and
// message: what MinIO compares (errors.Is on kes.Error).
func kesErrIs(t testing.TB, err error, want kes.Error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got %s, want %d %q", what, describeKESErr(err), want.Status(), want.Error())
	}
}

// kesErr fails the test unless err is a KES error with this status and
// message.
func kesErr(t testing.TB, err error, status int, msg, what string) {
	t.Helper()
	kesErrIs(t, err, kes.NewError(status, msg), what)
}

func kesNoErr(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %s", what, describeKESErr(err))
	}
}

func describeKESErr(err error) string {
	var e kes.Error
	if errors.As(err, &e) {
		return fmt.Sprintf("%d %q", e.Status(), e.Error())
	}
	if err == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%T %q", err, err.Error())
}

// kesConfig writes a config file for a dev node: debug logs (so that
// access denials reach /v1/log/error), an audit sink, and the KES enclave.
func kesConfig(t testing.TB, enclave string) (config, auditFile string) {
	t.Helper()
	dir := t.TempDir()
	config, auditFile = filepath.Join(dir, "keep.yaml"), filepath.Join(dir, "audit.log")
	text := fmt.Sprintf("version: v1\nlog:\n  level: debug\naudit:\n  sink: %s\n", auditFile)
	if enclave != "" {
		text += "kes:\n  enclave: " + enclave + "\n"
	}
	if err := os.WriteFile(config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return config, auditFile
}

// userWithPolicy registers a new User identity with a new policy in the
// default enclave, through the MinIO KMS API, and returns its key.
func userWithPolicy(t testing.TB, ctx context.Context, root *kms.Client, enclave, policy string, allow, deny map[cmds.Command]kms.RuleSet) mtls.PrivateKey {
	t.Helper()
	k := testnode.NewAPIKey(t)
	noErr(t, root.CreatePolicy(ctx, enclave, &kms.CreatePolicyRequest{Name: policy, Allow: allow, Deny: deny}), "CreatePolicy "+policy)
	noErr(t, root.CreateIdentity(ctx, enclave, &kms.CreateIdentityRequest{Identity: k.Identity(), Privilege: kms.User}), "CreateIdentity")
	noErr(t, root.AssignPolicy(ctx, enclave, &kms.AssignPolicyRequest{Identity: k.Identity(), Policy: policy}), "AssignPolicy "+policy)
	return k
}

// unsized is a body of unknown length: Go sends it chunked on HTTP/1.1
// and without Content-Length on HTTP/2, as the KES client does (spec §2.8).
type unsized struct{ r io.Reader }

func (u *unsized) Read(p []byte) (int, error) { return u.r.Read(p) }

// doUnsized sends a request with a body of unknown length.
func doUnsized(t testing.TB, hc *http.Client, method, url string, body []byte) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, &unsized{bytes.NewReader(body)})
	if err != nil {
		t.Fatal(err)
	}
	if req.ContentLength != 0 {
		t.Fatalf("request has Content-Length %d, want unknown", req.ContentLength)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: data, Proto: resp.Proto, Length: resp.ContentLength}
}

// kesMessage is the message of a KES JSON error reply.
func kesMessage(t testing.TB, r reply) string {
	t.Helper()
	var e struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Errorf("error reply %d %q is not {\"message\":…}: %v", r.Status, r.Body, err)
	}
	return e.Message
}

// next returns the next value of a stream, or fails after a while.
func next[T any](t testing.TB, c <-chan T, what string) T {
	t.Helper()
	select {
	case v, ok := <-c:
		if !ok {
			t.Fatalf("%s: stream ended", what)
		}
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: nothing within 20s", what)
	}
	var zero T
	return zero
}

// ---------------------------------------------------------------------------

func TestKESBanner(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{Dev: true})
	key := testnode.KESAPIKey(t, n.Root)
	if !strings.Contains(n.Banner, key.String()) {
		t.Errorf("banner does not print the root API key as %s:\n%s", key, n.Banner)
	}
	if id := kesIdentity(n.Root.Identity()); !strings.Contains(n.Banner, id.String()) {
		t.Errorf("banner does not print the root identity as %s:\n%s", id, n.Banner)
	}
	// The banner's kes:v1: key works with the KES client as root.
	info, _, err := n.KESClient(t, n.Root).DescribeSelf(ctxT(t))
	kesNoErr(t, err, "DescribeSelf as root")
	if !info.IsAdmin || info.Identity != key.Identity() {
		t.Errorf("DescribeSelf as root: %+v, want admin %s", info, key.Identity())
	}
}

func TestKES(t *testing.T) {
	t.Parallel()
	config, auditFile := kesConfig(t, "")
	n := testnode.Start(t, testnode.Options{Dev: true, Config: config})
	n.DeleteAtOnce(t)
	ctx := ctxT(t)
	root := n.RootClient(t)
	kc := n.KESClient(t, n.Root)
	rootID := kesIdentity(n.Root.Identity())

	t.Run("Keys", func(t *testing.T) {
		kesNoErr(t, kc.CreateKey(ctx, "k-1"), "CreateKey k-1")
		kesErrIs(t, kc.CreateKey(ctx, "k-1"), kes.ErrKeyExists, "CreateKey k-1 again")
		info, err := kc.DescribeKey(ctx, "k-1")
		kesNoErr(t, err, "DescribeKey k-1")
		if info.Name != "k-1" || info.Algorithm != kes.AES256 || info.CreatedBy != rootID || time.Since(info.CreatedAt) > time.Minute {
			t.Errorf("DescribeKey k-1: %+v, want AES256 created by %s just now", info, rootID)
		}
		_, err = kc.DescribeKey(ctx, "nope")
		kesErrIs(t, err, kes.ErrKeyNotFound, "DescribeKey nope")

		// generate and decrypt, with and without context
		dek, err := kc.GenerateKey(ctx, "k-1", []byte(`{"bucket":"bucket/object"}`))
		kesNoErr(t, err, "GenerateKey k-1")
		if len(dek.Plaintext) != 32 || len(dek.Ciphertext) == 0 {
			t.Fatalf("GenerateKey: %d-byte plaintext, %d-byte ciphertext", len(dek.Plaintext), len(dek.Ciphertext))
		}
		pt, err := kc.Decrypt(ctx, "k-1", dek.Ciphertext, []byte(`{"bucket":"bucket/object"}`))
		kesNoErr(t, err, "Decrypt k-1")
		if !bytes.Equal(pt, dek.Plaintext) {
			t.Error("Decrypt: plaintext differs from the generated one")
		}
		_, err = kc.Decrypt(ctx, "k-1", dek.Ciphertext, []byte(`{"bucket":"other"}`))
		kesErrIs(t, err, kes.ErrDecrypt, "Decrypt with another context")
		_, err = kc.Decrypt(ctx, "k-1", dek.Ciphertext, nil)
		kesErrIs(t, err, kes.ErrDecrypt, "Decrypt without context")
		_, err = kc.Decrypt(ctx, "k-1", []byte("not a ciphertext"), nil)
		kesErrIs(t, err, kes.ErrDecrypt, "Decrypt garbage")
		_, err = kc.GenerateKey(ctx, "nope", nil)
		kesErrIs(t, err, kes.ErrKeyNotFound, "GenerateKey nope")
		dek2, err := kc.GenerateKey(ctx, "k-1", nil)
		kesNoErr(t, err, "GenerateKey without context")
		pt, err = kc.Decrypt(ctx, "k-1", dek2.Ciphertext, nil)
		kesNoErr(t, err, "Decrypt without context")
		if !bytes.Equal(pt, dek2.Plaintext) {
			t.Error("Decrypt without context: wrong plaintext")
		}

		// The same key on the MinIO KMS API: a KES data key decrypts there.
		resp, err := root.Decrypt(ctx, "", &kms.DecryptRequest{Name: "k-1", Ciphertext: dek.Ciphertext, AssociatedData: []byte(`{"bucket":"bucket/object"}`)})
		noErr(t, err, "kms Decrypt of a KES data key")
		if len(resp) != 1 || !bytes.Equal(resp[0].Plaintext, dek.Plaintext) {
			t.Error("kms Decrypt of a KES data key: wrong plaintext")
		}

		// encrypt / decrypt
		ct, err := kc.Encrypt(ctx, "k-1", []byte("secret"), []byte("ctx"))
		kesNoErr(t, err, "Encrypt")
		pt, err = kc.Decrypt(ctx, "k-1", ct, []byte("ctx"))
		kesNoErr(t, err, "Decrypt of Encrypt")
		if string(pt) != "secret" {
			t.Errorf("Decrypt of Encrypt: %q", pt)
		}
		_, err = kc.Encrypt(ctx, "nope", []byte("x"), nil)
		kesErrIs(t, err, kes.ErrKeyNotFound, "Encrypt nope")

		// hmac: 32 bytes, deterministic per key, different per key and
		// message, unchanged by a rotation on the MinIO KMS API.
		kesNoErr(t, kc.CreateKey(ctx, "k-2"), "CreateKey k-2")
		m1, err := kc.HMAC(ctx, "k-1", []byte("root access key"))
		kesNoErr(t, err, "HMAC k-1")
		m1b, _ := kc.HMAC(ctx, "k-1", []byte("root access key"))
		m1c, _ := kc.HMAC(ctx, "k-1", []byte("root secret key"))
		m2, _ := kc.HMAC(ctx, "k-2", []byte("root access key"))
		if len(m1) != 32 || !bytes.Equal(m1, m1b) || bytes.Equal(m1, m1c) || bytes.Equal(m1, m2) {
			t.Errorf("HMAC: %x %x %x %x: want 32 bytes, equal for equal key and message only", m1, m1b, m1c, m2)
		}
		noErr(t, root.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "k-1", AddVersion: true}), "kms rotate k-1")
		if m, _ := kc.HMAC(ctx, "k-1", []byte("root access key")); !bytes.Equal(m, m1) {
			t.Errorf("HMAC changed after a rotation: %x, was %x", m, m1)
		}
		_, err = kc.HMAC(ctx, "nope", []byte("x"))
		kesErrIs(t, err, kes.ErrKeyNotFound, "HMAC nope")
		// Data keys from before the rotation still decrypt.
		if _, err := kc.Decrypt(ctx, "k-1", dek.Ciphertext, []byte(`{"bucket":"bucket/object"}`)); err != nil {
			t.Errorf("Decrypt after rotation: %s", describeKESErr(err))
		}

		// import
		material := make([]byte, 32)
		rand.Read(material)
		kesNoErr(t, kc.ImportKey(ctx, "imported", &kes.ImportKeyRequest{Key: material, Cipher: kes.AES256}), "ImportKey AES256")
		kesNoErr(t, kc.ImportKey(ctx, "imported-chacha", &kes.ImportKeyRequest{Key: material, Cipher: kes.ChaCha20}), "ImportKey ChaCha20")
		kesErrIs(t, kc.ImportKey(ctx, "imported", &kes.ImportKeyRequest{Key: material, Cipher: kes.AES256}), kes.ErrKeyExists, "ImportKey again")
		if info, err := kc.DescribeKey(ctx, "imported-chacha"); err != nil || info.Algorithm != kes.ChaCha20 {
			t.Errorf("DescribeKey imported-chacha: %+v %s", info, describeKESErr(err))
		}
		kesErr(t, kc.ImportKey(ctx, "short", &kes.ImportKeyRequest{Key: material[:16], Cipher: kes.AES256}), 406, "invalid key size for 'AES256'", "ImportKey 16 bytes")

		// delete
		kesNoErr(t, kc.DeleteKey(ctx, "k-2"), "DeleteKey k-2")
		_, err = kc.DescribeKey(ctx, "k-2")
		kesErrIs(t, err, kes.ErrKeyNotFound, "DescribeKey after DeleteKey")
		kesErrIs(t, kc.DeleteKey(ctx, "k-2"), kes.ErrKeyNotFound, "DeleteKey again")

		// names KES cannot spell
		for _, name := range []string{"a.b", "-a", "a-", "_", strings.Repeat("x", 81), "a b", "schlüssel"} {
			kesErr(t, kc.CreateKey(ctx, name), 400, fmt.Sprintf("key name '%s' is empty, too long or contains invalid characters", name), "CreateKey "+name)
			_, err := kc.GenerateKey(ctx, name, nil)
			kesErr(t, err, 400, fmt.Sprintf("key name '%s' is empty, too long or contains invalid characters", name), "GenerateKey "+name)
		}
		_, _, err = kc.ListKeys(ctx, "a*b", 0)
		kesErr(t, err, 400, "listing pattern 'a*b' is empty, too long or is invalid", "ListKeys a*b")
	})

	t.Run("List", func(t *testing.T) {
		// More keys than a KES page (1024) and a MinIO KMS page (1000):
		// the KES client feeds continue_at back as a prefix, so the server
		// returns every name at once.
		const count = 1030
		var wg sync.WaitGroup
		errs := make(chan error, count)
		sem := make(chan struct{}, 8)
		for i := range count {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				errs <- root.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: fmt.Sprintf("many-%04d", i)})
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			noErr(t, err, "CreateKey many-…")
		}
		for _, pattern := range []string{"many", "many-*", "many*"} {
			names, continueAt, err := kc.ListKeys(ctx, pattern, 0)
			kesNoErr(t, err, "ListKeys "+pattern)
			if len(names) != count || continueAt != "" || !slices.IsSorted(names) {
				t.Errorf("ListKeys %q: %d names, continue_at %q, want %d sorted and none", pattern, len(names), continueAt, count)
			}
		}
		// "" is sent as /v1/key/list, which redirects to /v1/key/list/.
		for _, pattern := range []string{"", "*"} {
			names, _, err := kc.ListKeys(ctx, pattern, 0)
			kesNoErr(t, err, "ListKeys "+pattern)
			if len(names) < count || !slices.Contains(names, "many-0000") || !slices.Contains(names, "many-1029") {
				t.Errorf("ListKeys %q: %d names, want all", pattern, len(names))
			}
		}
		iter := kes.ListIter[string]{NextFunc: kc.ListKeys}
		seen := 0
		for {
			if _, err := iter.Next(ctx); err == io.EOF {
				break
			} else {
				kesNoErr(t, err, "ListIter")
			}
			if seen++; seen > 2*count {
				t.Fatal("ListIter does not end")
			}
		}
		if seen < count {
			t.Errorf("ListIter: %d names, want all", seen)
		}
		if names, _, err := kc.ListKeys(ctx, "nothing", 0); err != nil || len(names) != 0 {
			t.Errorf("ListKeys nothing: %q %s", names, describeKESErr(err))
		}
	})

	t.Run("Wire", func(t *testing.T) {
		base := "https://" + n.Addr
		noErr(t, root.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "wire"}), "CreateKey wire")
		for _, h2 := range []bool{false, true} {
			hc := testnode.HTTPClientProto(t, n.Root, h2, time.Minute)
			anon := testnode.HTTPClientProto(t, nil, h2, time.Minute)
			proto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2"}[h2]

			// A body of unknown length is read: the context it carries is
			// bound, so decrypting needs it.
			r := doUnsized(t, hc, http.MethodPost, base+"/v1/key/generate/wire", []byte(`{"context":"`+base64.StdEncoding.EncodeToString([]byte("chunked"))+`"}`))
			if r.Status != 200 {
				t.Fatalf("%s: generate with a body of unknown length: %d %q", proto, r.Status, r.Body)
			}
			checkLength(t, proto+" generate reply", r)
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: generate reply Content-Type %q", proto, ct)
			}
			var dek struct{ Plaintext, Ciphertext []byte }
			if err := json.Unmarshal(r.Body, &dek); err != nil {
				t.Fatal(err)
			}
			pt, err := kc.Decrypt(ctx, "wire", dek.Ciphertext, []byte("chunked"))
			if err != nil || !bytes.Equal(pt, dek.Plaintext) {
				t.Errorf("%s: decrypt of a data key generated with a chunked body: %s", proto, describeKESErr(err))
			}
			if _, err := kc.Decrypt(ctx, "wire", dek.Ciphertext, nil); !errors.Is(err, kes.ErrDecrypt) {
				t.Errorf("%s: the context of a chunked body was not bound: %s", proto, describeKESErr(err))
			}

			// PUT where KES registers PUT, POST too; other methods get 405.
			for _, method := range []string{http.MethodPut, http.MethodPost} {
				r := doUnsized(t, hc, method, base+"/v1/key/hmac/wire", []byte(`{"message":"bWVzc2FnZQ=="}`))
				if r.Status != 200 {
					t.Errorf("%s %s /v1/key/hmac: %d %q", proto, method, r.Status, r.Body)
				}
			}
			for _, tc := range []struct{ method, path, want string }{
				{http.MethodGet, "/v1/key/create/x", "PUT"},
				{http.MethodDelete, "/v1/key/generate/x", "PUT"},
				{http.MethodPost, "/v1/key/describe/x", "GET"},
				{http.MethodGet, "/v1/key/delete/x", "DELETE"},
				{http.MethodPut, "/v1/status", "GET"},
			} {
				r := do(t, hc, tc.method, base+tc.path, nil, nil)
				want := fmt.Sprintf("received method '%s' expected '%s'", tc.method, tc.want)
				if r.Status != 405 || kesMessage(t, r) != want {
					t.Errorf("%s %s %s: %d %q, want 405 %q", proto, tc.method, tc.path, r.Status, r.Body, want)
				}
				checkLength(t, proto+" 405", r)
			}

			// Errors: {"message"}, JSON, Content-Length; the exact texts.
			for _, tc := range []struct {
				method, path, body string
				status             int
				msg                string
			}{
				{"GET", "/v1/key/describe/nope", "", 404, "key does not exist"},
				{"POST", "/v1/key/create/wire", "", 400, "key already exists"},
				{"POST", "/v1/key/create/a.b", "", 400, "key name 'a.b' is empty, too long or contains invalid characters"},
				{"POST", "/v1/key/create/", "", 400, "key name '' is empty, too long or contains invalid characters"},
				{"POST", "/v1/key/generate/wire", "{", 400, "invalid request body"},
				{"POST", "/v1/key/decrypt/wire", `{"ciphertext":"AAAA"}`, 400, "decryption failed: ciphertext is not authentic"},
				{"POST", "/v1/key/encrypt/wire", "", 400, "invalid request body"},
				{"POST", "/v1/key/import/x", "{", 400, "invalid import key request body"},
				{"POST", "/v1/key/import/x", `{"key":"` + base64.StdEncoding.EncodeToString(make([]byte, 32)) + `","cipher":"AES128"}`, 406, "algorithm 'AES128' is not supported"},
				{"POST", "/v1/key/import/x", `{"key":"AAAA","cipher":"AES256-GCM_SHA256"}`, 406, "invalid key size for 'AES256-GCM_SHA256'"},
				{"GET", "/v1/key/list/a*b", "", 400, "listing pattern 'a*b' is empty, too long or is invalid"},
				{"GET", "/v1/policy/describe/-p", "", 400, "policy name '-p' is empty, too long or contains invalid characters"},
				{"GET", "/v1/policy/read/nope", "", 404, "policy does not exist"},
				{"GET", "/v1/identity/describe/_", "", 400, "identity '_' is empty, too long or contains invalid characters"},
				{"GET", "/v1/identity/describe/" + strings.Repeat("ab", 32), "", 404, "identity does not exist"},
				{"GET", "/v1/identity/describe/no-identity", "", 404, "identity does not exist"},
			} {
				r := doUnsized(t, hc, tc.method, base+tc.path, []byte(tc.body))
				if r.Status != tc.status || kesMessage(t, r) != tc.msg {
					t.Errorf("%s %s %s: %d %q, want %d %q", proto, tc.method, tc.path, r.Status, r.Body, tc.status, tc.msg)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("%s %s %s: Content-Type %q", proto, tc.method, tc.path, ct)
				}
				checkLength(t, proto+" "+tc.path, r)
			}
			// A body over 1 MB is refused.
			big := `{"plaintext":"` + base64.StdEncoding.EncodeToString(make([]byte, 800_000)) + `"}`
			if r := doUnsized(t, hc, "POST", base+"/v1/key/encrypt/wire", []byte(big)); r.Status != 400 || kesMessage(t, r) != "invalid request body" {
				t.Errorf("%s: encrypt with a %d-byte body: %d %q", proto, len(big), r.Status, r.Body)
			}

			// Without a client certificate: 400, as KES.
			if r := do(t, anon, "GET", base+"/v1/key/describe/wire", nil, nil); r.Status != 400 || kesMessage(t, r) != "tls: client certificate is required" {
				t.Errorf("%s: no client certificate: %d %q", proto, r.Status, r.Body)
			}
			c1, err := kes.GenerateCertificate(testnode.KESAPIKey(t, n.Root))
			if err != nil {
				t.Fatal(err)
			}
			c2, err := kes.GenerateCertificate(testnode.KESAPIKey(t, testnode.NewAPIKey(t)))
			if err != nil {
				t.Fatal(err)
			}
			c1.Certificate = append(c1.Certificate, c2.Certificate[0])
			two := testnode.HTTPClientProto(t, nil, h2, time.Minute)
			two.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{c1}
			// The certificate the client proved (the first) is its identity;
			// the others are ignored (test/attack tries forged chains).
			if r := do(t, two, "GET", base+"/v1/key/describe/wire", nil, nil); r.Status != 200 {
				t.Errorf("%s: two client certificates, root's first: %d %q", proto, r.Status, r.Body)
			}

			// Subtree routes: the bare prefix is redirected with 301; the
			// KES client follows it for GET.
			noFollow := *hc
			noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			for _, p := range []string{"/v1/key/list", "/v1/policy/list", "/v1/identity/list"} {
				r := do(t, &noFollow, "GET", base+p, nil, nil)
				if r.Status != 301 || r.Header.Get("Location") != p+"/" {
					t.Errorf("%s GET %s: %d Location %q, want 301 to %s/", proto, p, r.Status, r.Header.Get("Location"), p)
				}
			}
			// Unknown paths are 404.
			for _, p := range []string{"/v1/nope", "/v1/key/nope/x", "/v1/key", "/v1/log"} {
				if r := do(t, hc, "GET", base+p, nil, nil); r.Status != 404 {
					t.Errorf("%s GET %s: %d, want 404", proto, p, r.Status)
				}
			}
			// Success without a body: 200 and Content-Length 0.
			name := fmt.Sprintf("wire-%t", h2)
			r = do(t, hc, "POST", base+"/v1/key/create/"+name, nil, nil)
			if r.Status != 200 || len(r.Body) != 0 {
				t.Errorf("%s create: %d %q", proto, r.Status, r.Body)
			}
			checkLength(t, proto+" create", r)
			// Both APIs' version clients read /version.
			if r := do(t, anon, "GET", base+"/version", nil, nil); r.Status != 200 {
				t.Errorf("%s GET /version: %d", proto, r.Status)
			}
		}
	})

	t.Run("System", func(t *testing.T) {
		_, err := kc.DescribeKey(ctx, "nope") // a 4xx for the metrics
		kesErrIs(t, err, kes.ErrKeyNotFound, "DescribeKey nope")
		kesNoErr(t, kc.CreateKey(ctx, "system"), "CreateKey system") // and a 2xx
		v, err := kc.Version(ctx)
		kesNoErr(t, err, "kes Version")
		versions, err := root.Version(ctx, &kms.VersionRequest{})
		noErr(t, err, "kms Version")
		if v == "" || len(versions) != 1 || versions[0].Version != v {
			t.Errorf("kes Version %q, kms Version %+v: want the same", v, versions)
		}
		ready, err := kc.IsReady(ctx)
		if err != nil || !ready {
			t.Errorf("IsReady: %v %s", ready, describeKESErr(err))
		}
		st, err := kc.Status(ctx)
		kesNoErr(t, err, "Status")
		if st.Version != v || st.OS == "" || st.Arch == "" || st.CPUs < 1 || st.UsableCPUs < 1 || st.HeapAlloc == 0 || !st.KeyStoreReachable || !st.KeystoreAvailable || st.KeyStoreLatency <= 0 {
			t.Errorf("Status: %+v", st)
		}
		apis, err := kc.APIs(ctx)
		kesNoErr(t, err, "APIs")
		paths := map[string]kes.API{}
		for _, a := range apis {
			paths[a.Path] = a
		}
		// The 22 routes of KES 63649d0 and the legacy bulk decryption.
		if len(apis) != 23 || paths["/v1/key/bulk/decrypt/"].Method != "POST" || paths["/v1/key/generate/"].Method != "PUT" || paths["/v1/key/generate/"].MaxBody != 1_000_000 ||
			paths["/v1/key/generate/"].Timeout != 15*time.Second || paths["/version"].Method != "GET" || paths["/v1/log/audit"].Timeout != 0 {
			t.Errorf("APIs: %+v", apis)
		}
		m, err := kc.Metrics(ctx)
		kesNoErr(t, err, "Metrics")
		if m.RequestOK == 0 || m.RequestErr == 0 || m.CPUs < 1 || m.UsableCPUs < 1 || m.Threads < 1 || m.HeapAlloc == 0 || len(m.LatencyHistogram) != 10 {
			t.Errorf("Metrics: %+v", m)
		}
		if b := m.LatencyHistogram[10*time.Second]; b == 0 || b > m.RequestN() {
			t.Errorf("Metrics: %d requests in the 10s bucket, %d requests", b, m.RequestN())
		}
		// /v1/metrics has no more than the client understands, with a length.
		r := do(t, testnode.HTTPClientProto(t, n.Root, true, time.Minute), "GET", "https://"+n.Addr+"/v1/metrics", nil, nil)
		checkLength(t, "/v1/metrics", r)
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") || !bytes.Contains(r.Body, []byte("kes_system_up_time")) {
			t.Errorf("/v1/metrics: %q\n%s", r.Header.Get("Content-Type"), r.Body)
		}
	})

	t.Run("SharedIdentity", func(t *testing.T) {
		// An identity and policy made on the MinIO KMS API.
		user := userWithPolicy(t, ctx, root, "", "app", map[cmds.Command]kms.RuleSet{
			cmds.KeyGenerate: {"app-*": {}},
			cmds.KeyDecrypt:  {"app-*": {}},
			cmds.KeyStatus:   {"*": {}},
			cmds.KeyList:     {"*": {}},
		}, map[cmds.Command]kms.RuleSet{
			cmds.KeyGenerate: {"app-secret*": {}},
		})
		uc := n.KESClient(t, user)
		want := kesIdentity(user.Identity())
		if want != testnode.KESAPIKey(t, user).Identity() {
			t.Fatalf("identity spellings: %s (hex of h1:) != %s (kes client)", want, testnode.KESAPIKey(t, user).Identity())
		}
		info, policy, err := uc.DescribeSelf(ctx)
		kesNoErr(t, err, "DescribeSelf as user")
		if info.Identity != want || info.IsAdmin || info.Policy != "app" || info.CreatedBy != rootID {
			t.Errorf("DescribeSelf: %+v, want identity %s, policy app, created by %s", info, want, rootID)
		}
		for _, p := range []string{"/v1/key/generate/app-*", "/v1/key/hmac/app-*", "/v1/key/decrypt/app-*", "/v1/key/describe/*", "/v1/key/list/*"} {
			if _, ok := policy.Allow[p]; !ok {
				t.Errorf("DescribeSelf: allow %v lacks %s", policy.Allow, p)
			}
		}
		if _, ok := policy.Deny["/v1/key/generate/app-secret*"]; !ok || len(policy.Deny) != 2 {
			t.Errorf("DescribeSelf: deny %v, want generate and hmac of app-secret*", policy.Deny)
		}
		// Root sees the identity in hex.
		di, err := kc.DescribeIdentity(ctx, want)
		kesNoErr(t, err, "DescribeIdentity")
		if di.Policy != "app" || di.IsAdmin || di.CreatedBy != rootID {
			t.Errorf("DescribeIdentity: %+v", di)
		}
		ids, _, err := kc.ListIdentities(ctx, "", 0)
		kesNoErr(t, err, "ListIdentities")
		if !slices.Contains(ids, want) {
			t.Errorf("ListIdentities: %v lacks %s", ids, want)
		}
		if ids, _, _ := kc.ListIdentities(ctx, string(want[:6])+"*", 0); !slices.Contains(ids, want) {
			t.Errorf("ListIdentities %s*: %v", want[:6], ids)
		}
		pi, err := kc.DescribePolicy(ctx, "app")
		if err != nil || pi.Name != "app" || pi.CreatedBy != rootID {
			t.Errorf("DescribePolicy: %+v %s", pi, describeKESErr(err))
		}
		p, err := kc.GetPolicy(ctx, "app")
		kesNoErr(t, err, "GetPolicy")
		if len(p.Allow) != len(policy.Allow) || len(p.Deny) != 2 || p.CreatedBy != rootID {
			t.Errorf("GetPolicy: %+v", p)
		}
		names, _, err := kc.ListPolicies(ctx, "*", 0)
		if err != nil || !slices.Contains(names, "app") {
			t.Errorf("ListPolicies: %v %s", names, describeKESErr(err))
		}

		// The MinIO KMS policy governs the KES routes.
		for _, k := range []string{"app-1", "app-secret-1", "other"} {
			noErr(t, root.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: k}), "CreateKey "+k)
		}
		dek, err := uc.GenerateKey(ctx, "app-1", []byte("c"))
		kesNoErr(t, err, "user GenerateKey app-1")
		_, err = uc.Decrypt(ctx, "app-1", dek.Ciphertext, []byte("c"))
		kesNoErr(t, err, "user Decrypt app-1")
		_, err = uc.HMAC(ctx, "app-1", []byte("m"))
		kesNoErr(t, err, "user HMAC app-1 (KEY:GENERATE governs it)")
		_, err = uc.DescribeKey(ctx, "other")
		kesNoErr(t, err, "user DescribeKey other")
		_, _, err = uc.ListKeys(ctx, "", 0)
		kesNoErr(t, err, "user ListKeys")
		for what, err := range map[string]error{
			"GenerateKey app-secret-1 (denied)": func() error { _, err := uc.GenerateKey(ctx, "app-secret-1", nil); return err }(),
			"GenerateKey other":                 func() error { _, err := uc.GenerateKey(ctx, "other", nil); return err }(),
			"HMAC other":                        func() error { _, err := uc.HMAC(ctx, "other", nil); return err }(),
			"HMAC app-secret-1":                 func() error { _, err := uc.HMAC(ctx, "app-secret-1", nil); return err }(),
			"Encrypt app-1":                     func() error { _, err := uc.Encrypt(ctx, "app-1", []byte("x"), nil); return err }(),
			"Decrypt other":                     func() error { _, err := uc.Decrypt(ctx, "other", dek.Ciphertext, nil); return err }(),
			"CreateKey app-2":                   uc.CreateKey(ctx, "app-2"),
			"ImportKey app-3":                   uc.ImportKey(ctx, "app-3", &kes.ImportKeyRequest{Key: make([]byte, 32)}),
			"DeleteKey app-1":                   uc.DeleteKey(ctx, "app-1"),
			"DescribePolicy app":                func() error { _, err := uc.DescribePolicy(ctx, "app"); return err }(),
			"GetPolicy app":                     func() error { _, err := uc.GetPolicy(ctx, "app"); return err }(),
			"ListPolicies":                      func() error { _, _, err := uc.ListPolicies(ctx, "", 0); return err }(),
			"DescribeIdentity root":             func() error { _, err := uc.DescribeIdentity(ctx, rootID); return err }(),
			"ListIdentities":                    func() error { _, _, err := uc.ListIdentities(ctx, "", 0); return err }(),
			"AuditLog":                          func() error { _, err := uc.AuditLog(ctx); return err }(),
			"ErrorLog":                          func() error { _, err := uc.ErrorLog(ctx); return err }(),
		} {
			kesErrIs(t, err, kes.ErrNotAllowed, "user "+what)
		}
		// The status routes serve every identity of the KES enclave.
		if _, err := uc.Status(ctx); err != nil {
			t.Errorf("user Status: %s", describeKESErr(err))
		}
		if ok, err := uc.IsReady(ctx); !ok || err != nil {
			t.Errorf("user IsReady: %v %s", ok, describeKESErr(err))
		}
		if _, err := uc.APIs(ctx); err != nil {
			t.Errorf("user APIs: %s", describeKESErr(err))
		}
		if _, err := uc.Metrics(ctx); err != nil {
			t.Errorf("user Metrics: %s", describeKESErr(err))
		}

		// Unknown identities, and identities of other enclaves, may do
		// nothing on the KES enclave.
		stranger := n.KESClient(t, testnode.NewAPIKey(t))
		noErr(t, root.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "elsewhere"}), "CreateEnclave elsewhere")
		otherAdmin := testnode.NewAPIKey(t)
		noErr(t, root.CreateIdentity(ctx, "elsewhere", &kms.CreateIdentityRequest{Identity: otherAdmin.Identity(), Privilege: kms.Admin}), "CreateIdentity Admin elsewhere")
		oc := n.KESClient(t, otherAdmin)
		for name, c := range map[string]*kes.Client{"unknown identity": stranger, "Admin of another enclave": oc} {
			_, err := c.GenerateKey(ctx, "app-1", nil)
			kesErrIs(t, err, kes.ErrNotAllowed, name+" GenerateKey")
			_, err = c.Status(ctx)
			kesErrIs(t, err, kes.ErrNotAllowed, name+" Status")
			_, err = c.Metrics(ctx)
			kesErrIs(t, err, kes.ErrNotAllowed, name+" Metrics")
		}
		_, _, err = stranger.DescribeSelf(ctx)
		kesErrIs(t, err, kes.ErrNotAllowed, "unknown identity DescribeSelf")
		if info, _, err := oc.DescribeSelf(ctx); err != nil || !info.IsAdmin {
			t.Errorf("Admin of another enclave DescribeSelf: %+v %s", info, describeKESErr(err))
		}

		// An Admin of the KES enclave may do everything with keys there,
		// but not follow the node's logs.
		admin := testnode.NewAPIKey(t)
		noErr(t, root.CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: admin.Identity(), Privilege: kms.Admin}), "CreateIdentity Admin")
		ac := n.KESClient(t, admin)
		kesNoErr(t, ac.CreateKey(ctx, "admins-key"), "Admin CreateKey")
		kesNoErr(t, ac.DeleteKey(ctx, "admins-key"), "Admin DeleteKey")
		if info, _, err := ac.DescribeSelf(ctx); err != nil || !info.IsAdmin || info.Policy != "" {
			t.Errorf("Admin DescribeSelf: %+v %s", info, describeKESErr(err))
		}
		_, err = ac.AuditLog(ctx)
		kesErrIs(t, err, kes.ErrNotAllowed, "Admin AuditLog")
	})

	t.Run("Logs", func(t *testing.T) {
		noErr(t, root.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "logs"}), "CreateKey logs")
		// The streams end when the client goes away: here, when their
		// requests are cancelled. The error stream first: its request is
		// audited.
		streamCtx, cancel := context.WithCancel(ctx)
		errs, err := kc.ErrorLog(streamCtx)
		kesNoErr(t, err, "ErrorLog")
		audits, err := kc.AuditLog(streamCtx)
		kesNoErr(t, err, "AuditLog")
		auditC, errorC := make(chan kes.AuditEvent, 1000), make(chan kes.ErrorEvent, 1000)
		go func() {
			defer close(auditC)
			for audits.Next() {
				auditC <- audits.Event()
			}
		}()
		go func() {
			defer close(errorC)
			for errs.Next() {
				errorC <- errs.Event()
			}
		}()
		defer func() {
			cancel()
			for range auditC {
			}
			for range errorC {
			}
			audits.Close()
			errs.Close()
		}()

		// A generate on each API, and a denied generate.
		start := time.Now()
		_, err = kc.GenerateKey(ctx, "logs", nil)
		kesNoErr(t, err, "GenerateKey")
		_, err = root.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "logs"})
		noErr(t, err, "kms GenerateKey")
		stranger := testnode.NewAPIKey(t)
		_, err = n.KESClient(t, stranger).GenerateKey(ctx, "logs", nil)
		kesErrIs(t, err, kes.ErrNotAllowed, "unknown identity GenerateKey")

		for i, want := range []struct {
			identity kes.Identity
			status   int
		}{{rootID, 200}, {rootID, 200}, {kesIdentity(stranger.Identity()), 403}} {
			e := next(t, auditC, "audit stream")
			if e.APIPath != "/v1/key/generate/logs" || e.ClientIdentity != want.identity || e.StatusCode != want.status ||
				e.ClientIP.String() != n.IP() && !e.ClientIP.IsLoopback() || e.Timestamp.Before(start.Add(-time.Second)) ||
				e.ResponseTime <= 0 || e.ResponseTime > time.Minute {
				t.Errorf("audit event %d: %+v, want generate of logs by %s with %d", i, e, want.identity, want.status)
			}
		}

		// The denial is in the error log (at debug level, as KES logs it).
		for {
			e := next(t, errorC, "error stream")
			if strings.Contains(e.Message, "access denied") {
				if !strings.Contains(e.Message, "level=DEBUG") || !strings.Contains(e.Message, "req.path=/v1/key/generate/logs") ||
					!strings.Contains(e.Message, "req.identity="+kesIdentity(stranger.Identity()).String()) {
					t.Errorf("error event: %q", e.Message)
				}
				break
			}
		}

		m, err := kc.Metrics(ctx)
		kesNoErr(t, err, "Metrics")
		if m.AuditEvents < 3 || m.ErrorEvents < 1 {
			t.Errorf("Metrics: %d audit events, %d error events streamed", m.AuditEvents, m.ErrorEvents)
		}
	})

	t.Run("AuditSink", func(t *testing.T) {
		// Every KES request that reached the service is in the audit
		// log, as the MinIO KMS command it maps to; malformed ones are not.
		_, err := kc.GenerateKey(ctx, "audited", nil)
		kesErrIs(t, err, kes.ErrKeyNotFound, "GenerateKey audited")
		kesNoErr(t, kc.CreateKey(ctx, "audited"), "CreateKey audited")
		_, err = kc.HMAC(ctx, "audited", nil)
		kesNoErr(t, err, "HMAC audited")
		kesErr(t, kc.CreateKey(ctx, "audited.x"), 400, "key name 'audited.x' is empty, too long or contains invalid characters", "CreateKey audited.x")

		type event struct {
			API, Command, Enclave, Resource, Identity, Error string
			Status                                           int
		}
		var got []event
		deadline := time.Now().Add(10 * time.Second)
		for {
			got = got[:0]
			f, err := os.Open(auditFile)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var e event
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatalf("audit line %q: %v", sc.Bytes(), err)
				}
				if e.API == "kes" && strings.HasPrefix(e.Resource, "audited") {
					got = append(got, e)
				}
			}
			f.Close()
			if len(got) >= 3 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		h1 := n.Root.Identity().String()
		want := []event{
			{"kes", "KEY:GENERATE", "default", "audited", h1, "key does not exist", 404},
			{"kes", "KEY:CREATE", "default", "audited", h1, "", 200},
			{"kes", "KEY:MAC", "default", "audited", h1, "", 200},
		}
		if !slices.Equal(got, want) {
			t.Errorf("audit records of KES requests:\n got %+v\nwant %+v", got, want)
		}
	})
}

// TestKESEnclave: KES calls act on the configured enclave.
func TestKESEnclave(t *testing.T) {
	t.Parallel()
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: v1\nkes:\n  enclave: \"no way\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := testnode.Run(t, testnode.BaseEnv(t.TempDir()), "server", "--dev", "--address", testnode.AllocAddr(t), "--config", bad); r.Code == 0 || !strings.Contains(r.Stderr, "kes.enclave") {
		t.Errorf("keep server with kes.enclave \"no way\": exit %d, stderr %q; want an error naming kes.enclave", r.Code, r.Stderr)
	}

	config, _ := kesConfig(t, "tenant")
	n := testnode.Start(t, testnode.Options{Dev: true, Config: config})
	ctx := ctxT(t)
	root := n.RootClient(t)
	kc := n.KESClient(t, n.Root)

	kesErrIs(t, kc.CreateKey(ctx, "k"), kes.ErrEnclaveNotFound, "CreateKey before the enclave exists")
	noErr(t, root.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "tenant"}), "CreateEnclave tenant")
	kesNoErr(t, kc.CreateKey(ctx, "k"), "CreateKey in tenant")
	if _, err := root.KeyStatus(ctx, "tenant", &kms.KeyStatusRequest{Name: "k"}); err != nil {
		t.Errorf("kms KeyStatus tenant/k: %s", testnode.DescribeErr(err))
	}
	_, err := root.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "k"})
	errIs(t, err, kms.ErrKeyNotFound, "kms KeyStatus default/k")

	// Identities of the tenant enclave may use it; those of default not.
	admin := testnode.NewAPIKey(t)
	noErr(t, root.CreateIdentity(ctx, "tenant", &kms.CreateIdentityRequest{Identity: admin.Identity(), Privilege: kms.Admin}), "CreateIdentity Admin tenant")
	_, err = n.KESClient(t, admin).GenerateKey(ctx, "k", nil)
	kesNoErr(t, err, "tenant Admin GenerateKey")
	other := testnode.NewAPIKey(t)
	noErr(t, root.CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: other.Identity(), Privilege: kms.Admin}), "CreateIdentity Admin default")
	_, err = n.KESClient(t, other).GenerateKey(ctx, "k", nil)
	kesErrIs(t, err, kes.ErrNotAllowed, "default Admin GenerateKey in tenant")
}
