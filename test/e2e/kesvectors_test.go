package e2e

// Taking over from KES (issue 10), end to end: a KES fixture set (see
// test/kesfixture) is imported into a real Keep node through the import
// route, and every ciphertext and HMAC a real KES server made is checked
// through the KES API and the MinIO KMS API, before and after every key is
// rotated, and after a restart. Nothing here names a key, a vector or a
// value of one particular set.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kes"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	"github.com/tinylib/msgp/msgp"

	"github.com/keep-kms/keep/test/kesfixture"
	"github.com/keep-kms/keep/test/testnode"
)

const (
	// kesImportEnclave is the enclave the KES API of these nodes serves
	// (kes.enclave) and the fixture's keys are imported into: not the
	// default one, so that a route that ignored the enclave would fail.
	kesImportEnclave = "kes-takeover"

	// kesNotAuthentic is the message of the KES API for a ciphertext that
	// does not decrypt (400), the same for KES's and Keep's ciphertexts.
	kesNotAuthentic = "decryption failed: ciphertext is not authentic"

	// cmdKeyMAC is the MinIO KMS command KEY:MAC, which the pinned client
	// does not know (spec minio-kms-api-upstream.md §10).
	cmdKeyMAC cmds.Command = 210

	// kesBulkMax is the most ciphertexts KES's /v1/key/bulk/decrypt/ takes
	// in one request.
	kesBulkMax = 1000
)

// kesTakeover is a KES fixture set imported into Keep.
type kesTakeover struct {
	vec   *kesfixture.Vectors
	man   *kesfixture.Manifest // nil: the set has no manifest.json
	files []kesfixture.KeyFile
	key   mtls.PrivateKey // the fixture's API key, an Admin of kesImportEnclave
}

// kesTarget is one node, seen through the fixture's API key.
type kesTarget struct {
	name     string
	endpoint string
	kes      *kes.Client
	kms      *kms.Client
	hc       *http.Client // raw HTTPS
}

// target returns clients of n that authenticate with the fixture's API key.
func (x *kesTakeover) target(t testing.TB, n *testnode.Node) *kesTarget {
	t.Helper()
	return &kesTarget{
		name:     n.Name,
		endpoint: n.Endpoint(),
		kes:      n.KESClient(t, x.key),
		kms:      n.Client(t, x.key),
		hc:       testnode.HTTPClient(t, x.key, 30*time.Second),
	}
}

// kesTakeoverConfig writes a node config whose KES API serves
// kesImportEnclave.
func kesTakeoverConfig(t testing.TB) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "keep.yaml")
	if err := os.WriteFile(file, []byte("version: v1\nkes:\n  enclave: "+kesImportEnclave+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// importKESFixture creates kesImportEnclave on n, registers the fixture's
// API key as its Admin (a KES deployment keeps its API keys), and imports
// the keystore through the import route as SysAdmin: a dry run first,
// then the import, then the same again, which must change nothing.
func importKESFixture(t *testing.T, n *testnode.Node) *kesTakeover {
	t.Helper()
	dir := testnode.KESFixtureDir(t)
	x := &kesTakeover{vec: kesfixture.LoadVectors(t, dir), files: kesfixture.KeyFiles(t, dir)}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err == nil {
		x.man = kesfixture.LoadManifest(t, dir)
	}
	x.key = testnode.ParseAPIKey(t, x.vec.APIKeyK1)
	if got := testnode.KESAPIKey(t, x.key).String(); got != x.vec.APIKey {
		t.Fatalf("vectors.json: api_key_k1 spelled as KES does is %s, api_key is %s", got, x.vec.APIKey)
	}
	id, err := mtls.ParseIdentity(x.vec.IdentityH1)
	if err != nil || id != x.key.Identity() {
		t.Fatalf("vectors.json: identity_h1 %s (%v) is not the identity of api_key_k1 (%s)", x.vec.IdentityH1, err, x.key.Identity())
	}

	ctx := ctxT(t)
	root := n.RootClient(t)
	noErr(t, root.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: kesImportEnclave}), "CreateEnclave "+kesImportEnclave)
	noErr(t, root.CreateIdentity(ctx, kesImportEnclave, &kms.CreateIdentityRequest{Identity: id, Privilege: kms.Admin}), "CreateIdentity (the fixture's API key)")

	hc := testnode.HTTPClient(t, n.Root, 30*time.Second)
	want := make(map[string]kesfixture.Key)
	for _, k := range x.vec.Keys {
		want[k.Name] = k
	}
	for _, step := range []struct {
		dryRun bool
		status string
	}{{true, "new"}, {false, "imported"}, {true, "exists"}, {false, "exists"}} {
		for name, r := range kesfixture.Import(t, hc, n.Endpoint(), kesImportEnclave, x.files, step.dryRun) {
			if r.Status != step.status {
				t.Errorf("import %s (dry run %v): status %q, want %q", name, step.dryRun, r.Status, step.status)
			}
			k, ok := want[name]
			if !ok {
				continue // a key file vectors.json does not describe
			}
			if r.Format != k.FileFormat || r.Algorithm != k.Algorithm || r.HMAC != (k.HMACKey != nil) {
				t.Errorf("import %s: format %q, algorithm %q, hmac %v; want %q, %q, %v", name, r.Format, r.Algorithm, r.HMAC, k.FileFormat, k.Algorithm, k.HMACKey != nil)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return x
}

// checkKeys checks what both APIs say of version 1 of every imported key:
// its algorithm and, where the key file has them, when and by whom KES
// created it. The KES API describes the latest version, so it is asked
// only while that is version 1.
func (x *kesTakeover) checkKeys(t *testing.T, tg *kesTarget, latest int) {
	ctx := ctxT(t)
	for _, k := range x.vec.Keys {
		type meta struct {
			alg       string
			createdAt time.Time
			createdBy string
		}
		var views []meta
		st, err := tg.kms.KeyStatus(ctx, kesImportEnclave, &kms.KeyStatusRequest{Name: k.Name, Version: 1})
		if err != nil {
			t.Errorf("%s: KeyStatus %s version 1: %s", tg.name, k.Name, testnode.DescribeErr(err))
		} else {
			views = append(views, meta{st[0].Type.String(), st[0].CreatedAt, string(kesIdentity(st[0].CreatedBy))})
		}
		if latest == 1 {
			info, err := tg.kes.DescribeKey(ctx, k.Name)
			if err != nil {
				t.Errorf("%s: DescribeKey %s: %s", tg.name, k.Name, describeKESErr(err))
			} else {
				views = append(views, meta{info.Algorithm.String(), info.CreatedAt, string(info.CreatedBy)})
			}
		}
		for i, v := range views {
			api := []string{"MinIO KMS KeyStatus", "KES DescribeKey"}[i]
			if v.alg != k.Algorithm {
				t.Errorf("%s: %s %s: algorithm %s, want %s", tg.name, api, k.Name, v.alg, k.Algorithm)
			}
			if k.CreatedAt != nil && !v.createdAt.Equal(*k.CreatedAt) {
				t.Errorf("%s: %s %s: created at %v, want %v (the key file's)", tg.name, api, k.Name, v.createdAt, *k.CreatedAt)
			}
			if k.CreatedBy != nil && v.createdBy != *k.CreatedBy {
				t.Errorf("%s: %s %s: created by %q, want %q (the key file's)", tg.name, api, k.Name, v.createdBy, *k.CreatedBy)
			}
		}
	}
}

// decrypts checks that ciphertext of key decrypts to plaintext through both
// APIs (MinIO KMS with version 0, what MinIO sends, and with the key
// version that made it), and that it does not with a wrong context or with
// a byte flipped in any of its parts.
func (tg *kesTarget) decrypts(t *testing.T, what, key string, version int, ciphertext, context, plaintext []byte) {
	t.Helper()
	ctx := ctxT(t)
	got, err := tg.kes.Decrypt(ctx, key, ciphertext, context)
	if err != nil || !bytes.Equal(got, plaintext) {
		t.Errorf("%s: %s: KES decrypt: %s (plaintext right: %v)", tg.name, what, describeKESErr(err), bytes.Equal(got, plaintext))
	}
	for _, version := range []int{0, version} {
		resp, err := tg.kms.Decrypt(ctx, kesImportEnclave, &kms.DecryptRequest{Name: key, Version: version, Ciphertext: ciphertext, AssociatedData: context})
		if err != nil || !bytes.Equal(resp[0].Plaintext, plaintext) {
			t.Errorf("%s: %s: MinIO KMS decrypt version %d: %s", tg.name, what, version, testnode.DescribeErr(err))
		}
	}

	wrong := append(bytes.Clone(context), '!')
	bad := map[string][2][]byte{"wrong context": {ciphertext, wrong}}
	if len(context) > 0 {
		bad["no context"] = [2][]byte{ciphertext, nil}
	}
	for part, ct := range tamperKES(t, ciphertext) {
		bad[part+" tampered"] = [2][]byte{ct, context}
	}
	for how, in := range bad {
		_, err := tg.kes.Decrypt(ctx, key, in[0], in[1])
		kesErr(t, err, http.StatusBadRequest, kesNotAuthentic, fmt.Sprintf("%s: %s, %s: KES decrypt", tg.name, what, how))
		_, err = tg.kms.Decrypt(ctx, kesImportEnclave, &kms.DecryptRequest{Name: key, Ciphertext: in[0], AssociatedData: in[1]})
		errIs(t, err, kms.ErrDecrypt, fmt.Sprintf("%s: %s, %s: MinIO KMS decrypt", tg.name, what, how))
	}
}

// tamperKES returns copies of a KES ciphertext with one byte flipped in each
// of its parts (the AEAD output, the IV, the nonce), each still in the
// ciphertext's encoding, so that the server parses it as such and fails
// on authentication.
func tamperKES(t *testing.T, ciphertext []byte) map[string][]byte {
	t.Helper()
	flip := func(b []byte) { b[len(b)/2] ^= 0x01 }
	out := make(map[string][]byte)
	parts := []string{"sealed data", "iv", "nonce"}

	// msgpack: [algorithm, id, iv, nonce, bytes], flipped in place.
	if ciphertext[0] == 0x95 {
		ok := true
		for i, part := range []string{"iv", "nonce", "sealed data"} {
			c := bytes.Clone(ciphertext)
			_, rest, err := msgp.ReadArrayHeaderBytes(c)
			for range 2 {
				if err == nil {
					_, rest, err = msgp.ReadStringZC(rest)
				}
			}
			var field []byte
			for range i + 1 {
				if err == nil {
					field, rest, err = msgp.ReadBytesZC(rest)
				}
			}
			if err != nil || len(field) == 0 {
				ok = false // a raw ciphertext that starts with 0x95 by chance
				break
			}
			flip(field)
			out[part] = c
		}
		if ok {
			return out
		}
		clear(out)
	}

	// JSON: {"aead", "id", "iv", "nonce", "bytes"}, each base64 value
	// replaced by its tampered spelling in place.
	if ciphertext[0] == '{' {
		var j struct{ IV, Nonce, Bytes []byte }
		if json.Unmarshal(ciphertext, &j) == nil && len(j.IV) > 0 && len(j.Nonce) > 0 && len(j.Bytes) > 0 {
			for part, field := range map[string][]byte{"iv": j.IV, "nonce": j.Nonce, "sealed data": j.Bytes} {
				old := base64.StdEncoding.EncodeToString(field)
				tampered := bytes.Clone(field)
				flip(tampered)
				c := bytes.Replace(ciphertext, []byte(`"`+old+`"`), []byte(`"`+base64.StdEncoding.EncodeToString(tampered)+`"`), 1)
				if bytes.Equal(c, ciphertext) {
					t.Fatalf("JSON ciphertext %q does not spell its %s as %q", ciphertext, part, old)
				}
				out[part] = c
			}
			return out
		}
	}

	// raw: sealed data || iv (16) || nonce (12).
	n := len(ciphertext)
	if n <= 28 {
		t.Fatalf("raw ciphertext of %d bytes", n)
	}
	for i, r := range [][2]int{{0, n - 28}, {n - 28, n - 12}, {n - 12, n}} {
		c := bytes.Clone(ciphertext)
		flip(c[r[0]:r[1]])
		out[parts[i]] = c
	}
	return out
}

// hmacs checks every HMAC vector on the KES API (raw, for the exact status
// and body, and with the KES client) and on the MinIO KMS API (KEY:MAC of
// version 1, and of version 0 while version 1 is the latest).
func (x *kesTakeover) hmacs(t *testing.T, tg *kesTarget, latest int) {
	ctx := ctxT(t)
	for i, v := range x.vec.HMACVectors {
		what := fmt.Sprintf("%s: hmac_vectors[%d] (key %s)", tg.name, i, v.Key)
		body, err := json.Marshal(map[string][]byte{"message": v.Message})
		if err != nil {
			t.Fatal(err)
		}
		r := do(t, tg.hc, http.MethodPut, tg.endpoint+"/v1/key/hmac/"+v.Key, body, map[string]string{"Content-Type": "application/json"})
		if v.ExpectedError != nil {
			if r.Status != v.ExpectedError.Status || !jsonEqual(r.Body, v.ExpectedError.Body) {
				t.Errorf("%s: PUT /v1/key/hmac/: %d %s, want %d %s", what, r.Status, r.Body, v.ExpectedError.Status, v.ExpectedError.Body)
			}
			// KEY:MAC of a version without an HMAC key fails alike.
			_, err := sendEncryptFrames(ctx, tg.kms, kesImportEnclave, cmdKeyMAC, &kms.EncryptRequest{Name: v.Key, Version: 1, Plaintext: v.Message})
			errStatus(t, err, v.ExpectedError.Status, what+": KEY:MAC version 1")
			continue
		}
		var got struct{ HMAC []byte }
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &got) != nil || !bytes.Equal(got.HMAC, v.HMAC) {
			t.Errorf("%s: PUT /v1/key/hmac/: %d %s, want 200 and KES's HMAC", what, r.Status, r.Body)
		}
		if mac, err := tg.kes.HMAC(ctx, v.Key, v.Message); err != nil || !bytes.Equal(mac, v.HMAC) {
			t.Errorf("%s: KES client HMAC: %s (equal: %v)", what, describeKESErr(err), bytes.Equal(mac, v.HMAC))
		}
		versions := []int{1}
		if latest == 1 {
			versions = append(versions, 0)
		}
		for _, version := range versions {
			resp, err := sendEncryptFrames(ctx, tg.kms, kesImportEnclave, cmdKeyMAC, &kms.EncryptRequest{Name: v.Key, Version: version, Plaintext: v.Message})
			if err != nil || resp[0].Version != 1 || !bytes.Equal(resp[0].Ciphertext, v.HMAC) {
				t.Errorf("%s: KEY:MAC version %d: %s, want version 1 and KES's HMAC", what, version, testnode.DescribeErr(err))
			}
		}
		if latest > 1 {
			resp, err := sendEncryptFrames(ctx, tg.kms, kesImportEnclave, cmdKeyMAC, &kms.EncryptRequest{Name: v.Key, Plaintext: v.Message})
			if err != nil || resp[0].Version != latest {
				t.Errorf("%s: KEY:MAC version 0 after rotation: %s, want a MAC of version %d", what, testnode.DescribeErr(err), latest)
			}
		}
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && reflect.DeepEqual(x, y)
}

// bulkItem is one element of a /v1/key/bulk/decrypt/ request.
type bulkItem struct {
	Ciphertext []byte `json:"ciphertext"`
	Context    []byte `json:"context,omitempty"`
}

// bulk checks KES's legacy POST /v1/key/bulk/decrypt/ with the vectors of
// the key that has most of them: a batch of all of them, the largest
// batch, and the errors (a batch with one tampered ciphertext, one too
// many, a body that is not JSON).
func (x *kesTakeover) bulk(t *testing.T, tg *kesTarget) {
	byKey := make(map[string][]kesfixture.Vector)
	for _, v := range x.vec.Vectors {
		byKey[v.Key] = append(byKey[v.Key], v)
	}
	var key string
	for k, vs := range byKey {
		if len(vs) > len(byKey[key]) || len(vs) == len(byKey[key]) && k < key {
			key = k
		}
	}
	vs := byKey[key]
	items := make([]bulkItem, len(vs))
	for i, v := range vs {
		items[i] = bulkItem{v.Ciphertext, v.Context}
	}
	url := tg.endpoint + "/v1/key/bulk/decrypt/" + key
	post := func(body any) reply {
		t.Helper()
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				t.Fatal(err)
			}
		}
		return do(t, tg.hc, http.MethodPost, url, b, map[string]string{"Content-Type": "application/json"})
	}
	check := func(r reply, want []kesfixture.Vector, what string) {
		t.Helper()
		var got []struct{ Plaintext []byte }
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &got) != nil || len(got) != len(want) {
			t.Errorf("%s: bulk decrypt %s, %s: %d %.200s, want 200 and %d plaintexts", tg.name, key, what, r.Status, r.Body, len(want))
			return
		}
		for i := range got {
			if !bytes.Equal(got[i].Plaintext, want[i].Plaintext) {
				t.Errorf("%s: bulk decrypt %s, %s: plaintext %d (vector %s) differs", tg.name, key, what, i, want[i].ID)
			}
		}
	}
	check(post(items), vs, fmt.Sprintf("%d vectors", len(vs)))

	var full []bulkItem
	var fullWant []kesfixture.Vector
	for i := range kesBulkMax {
		full, fullWant = append(full, items[i%len(items)]), append(fullWant, vs[i%len(vs)])
	}
	check(post(full), fullWant, fmt.Sprintf("%d ciphertexts", kesBulkMax))

	fail := func(r reply, status int, msg, what string) {
		t.Helper()
		if r.Status != status || (msg != "" && kesMessage(t, r) != msg) || (msg == "" && kesMessage(t, r) == "") {
			t.Errorf("%s: bulk decrypt %s, %s: %d %.200s, want %d %q", tg.name, key, what, r.Status, r.Body, status, msg)
		}
	}
	for part, ct := range tamperKES(t, vs[len(vs)-1].Ciphertext) {
		bad := slices.Clone(items)
		bad[len(bad)-1].Ciphertext = ct
		fail(post(bad), http.StatusBadRequest, kesNotAuthentic, "the last ciphertext's "+part+" tampered")
	}
	wrong := slices.Clone(items)
	wrong[0].Context = append(bytes.Clone(wrong[0].Context), '!')
	fail(post(wrong), http.StatusBadRequest, kesNotAuthentic, "the first context wrong")
	fail(post(append(full, items[0])), http.StatusBadRequest, "too many ciphertexts", fmt.Sprintf("%d ciphertexts", kesBulkMax+1))
	fail(post([]byte(`[{"ciphertext":`)), http.StatusBadRequest, "", "truncated JSON")
	fail(post([]byte(`{"ciphertext":"AAAA"}`)), http.StatusBadRequest, "", "an object, not a list")
}

// checkAll checks, on tg, every vector, the manifest's ciphertexts, the
// HMAC vectors and the bulk decryption. latest is the keys' latest version.
func (x *kesTakeover) checkAll(t *testing.T, tg *kesTarget, latest int) {
	t.Run("Keys", func(t *testing.T) { x.checkKeys(t, tg, latest) })
	t.Run("Vectors", func(t *testing.T) {
		for _, v := range x.vec.Vectors {
			tg.decrypts(t, "vector "+v.ID, v.Key, 1, v.Ciphertext, v.Context, v.Plaintext)
		}
	})
	t.Run("Manifest", func(t *testing.T) {
		if x.man == nil {
			t.Skip("the fixture set has no manifest.json")
		}
		for _, c := range x.man.Ciphertexts() {
			tg.decrypts(t, c.Name, c.KES.Key, 1, c.KES.Ciphertext, c.KES.Context, c.KES.Plaintext)
		}
	})
	t.Run("HMAC", func(t *testing.T) { x.hmacs(t, tg, latest) })
	t.Run("BulkDecrypt", func(t *testing.T) { x.bulk(t, tg) })
}

// newDataKeys checks that every key makes Keep ciphertexts (first byte
// 0x01) of its latest version on both APIs, and that they decrypt on both.
func (x *kesTakeover) newDataKeys(t *testing.T, tg *kesTarget, latest int) {
	ctx := ctxT(t)
	for _, f := range x.files {
		context := []byte(`{"bucket":"after-takeover"}`)
		dek, err := tg.kes.GenerateKey(ctx, f.Name, context)
		if err != nil {
			t.Errorf("%s: KES GenerateKey %s: %s", tg.name, f.Name, describeKESErr(err))
			continue
		}
		if len(dek.Ciphertext) == 0 || dek.Ciphertext[0] != 0x01 {
			t.Errorf("%s: KES GenerateKey %s: ciphertext %x…, want a Keep ciphertext (0x01 first)", tg.name, f.Name, dek.Ciphertext[:min(4, len(dek.Ciphertext))])
		}
		tg.decrypts(t, "a KES data key of "+f.Name, f.Name, latest, dek.Ciphertext, context, dek.Plaintext)

		gen, err := tg.kms.GenerateKey(ctx, kesImportEnclave, &kms.GenerateKeyRequest{Name: f.Name, AssociatedData: context, Length: 32})
		if err != nil {
			t.Errorf("%s: MinIO KMS GenerateKey %s: %s", tg.name, f.Name, testnode.DescribeErr(err))
			continue
		}
		if len(gen[0].Ciphertext) == 0 || gen[0].Ciphertext[0] != 0x01 || gen[0].Version != latest {
			t.Errorf("%s: MinIO KMS GenerateKey %s: version %d, ciphertext %x…, want a Keep ciphertext of a rotated key", tg.name, f.Name, gen[0].Version, gen[0].Ciphertext[:min(4, len(gen[0].Ciphertext))])
		}
		got, err := tg.kes.Decrypt(ctx, f.Name, gen[0].Ciphertext, context)
		if err != nil || !bytes.Equal(got, gen[0].Plaintext) {
			t.Errorf("%s: KES decrypt of a MinIO KMS data key of %s: %s", tg.name, f.Name, describeKESErr(err))
		}
	}
}

// cliDecrypt decrypts, for every encoding, a vector without context with
// `keep decrypt NAME BASE64`, the spot check docs/migrate-from-kes.md
// shows. (One per encoding: the API calls behind it are checked above,
// and every keep process costs a second under -race.)
func (x *kesTakeover) cliDecrypt(t *testing.T, n *testnode.Node) {
	done := make(map[string]bool)
	for _, v := range x.vec.Vectors {
		if len(v.Context) > 0 || done[v.Encoding] {
			continue
		}
		done[v.Encoding] = true
		r := testnode.CLI(t, []string{n.Endpoint()}, x.vec.APIKeyK1, "decrypt", v.Key, base64.StdEncoding.EncodeToString(v.Ciphertext), "-e", kesImportEnclave, "-k")
		if want := base64.StdEncoding.EncodeToString(v.Plaintext); r.Code != 0 || strings.TrimSpace(r.Stdout) != want {
			t.Errorf("vector %s: %v\nwant the plaintext %s", v.ID, r, want)
		}
	}
	if len(done) == 0 {
		t.Skip("the set has no vector without context")
	}
}

// rotate adds a version to every imported key with `keep add-key NAME
// --version`.
func (x *kesTakeover) rotate(t *testing.T, n *testnode.Node) {
	for _, f := range x.files {
		r := testnode.CLI(t, []string{n.Endpoint()}, n.APIKey, "add-key", f.Name, "--version", "-e", kesImportEnclave, "-k")
		if r.Code != 0 {
			t.Fatalf("%v", r)
		}
	}
}

// TestKESVectors imports a KES fixture set into a node and checks every
// KES ciphertext and HMAC of it; then again after every key was rotated,
// and after a restart.
func TestKESVectors(t *testing.T) {
	t.Parallel()
	testnode.KESFixtureDir(t) // skip before starting anything
	n := testnode.Start(t, testnode.Options{Config: kesTakeoverConfig(t)})
	x := importKESFixture(t, n)
	tg := x.target(t, n)

	start := time.Now()
	t.Run("Imported", func(t *testing.T) {
		x.checkAll(t, tg, 1)
		t.Run("CLI", func(t *testing.T) { x.cliDecrypt(t, n) })
		// Data keys made after the import are Keep's already: a KES
		// server cannot read them (docs/migrate-from-kes.md, roll back).
		t.Run("NewDataKeys", func(t *testing.T) { x.newDataKeys(t, tg, 1) })
	})
	t.Logf("checked %d vectors, %d HMAC vectors on both APIs in %v", len(x.vec.Vectors), len(x.vec.HMACVectors), time.Since(start).Round(time.Millisecond))

	x.rotate(t, n)
	t.Run("Rotated", func(t *testing.T) {
		x.checkAll(t, tg, 2)
		t.Run("NewDataKeys", func(t *testing.T) { x.newDataKeys(t, tg, 2) })
	})

	n.Restart()
	t.Run("Restarted", func(t *testing.T) {
		x.checkAll(t, tg, 2)
		t.Run("NewDataKeys", func(t *testing.T) { x.newDataKeys(t, tg, 2) })
	})
}

// TestKESVectorsCluster imports a KES fixture set through the first node
// of a three-node cluster and decrypts every vector on the other two.
func TestKESVectorsCluster(t *testing.T) {
	t.Parallel()
	testnode.KESFixtureDir(t)
	config, hsm := kesTakeoverConfig(t), testnode.NewHSMKey(t)
	nodes := make([]*testnode.Node, 3)
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i := range nodes {
		nodes[i] = testnode.New(t, testnode.Options{Name: fmt.Sprintf("n%d", i), HSMKey: hsm, Config: config})
		wg.Go(func() { errs[i] = nodes[i].Start() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	root := nodes[0].RootClient(t)
	for _, n := range nodes[1:] {
		noErr(t, root.AddNode(ctxT(t), &kms.AddClusterNodeRequest{Host: n.Host}), "AddNode "+n.Host)
	}
	x := importKESFixture(t, nodes[0])

	for _, n := range nodes[1:] {
		tg := x.target(t, n)
		waitForKeys(t, tg, x.files)
		t.Run(n.Name, func(t *testing.T) {
			for _, v := range x.vec.Vectors {
				tg.decrypts(t, "vector "+v.ID, v.Key, 1, v.Ciphertext, v.Context, v.Plaintext)
			}
			x.hmacs(t, tg, 1)
		})
	}
}

// waitForKeys waits until tg's node has every key: a follower applies the
// import a moment after the leader answered.
func waitForKeys(t *testing.T, tg *kesTarget, files []kesfixture.KeyFile) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, f := range files {
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := tg.kms.KeyStatus(ctx, kesImportEnclave, &kms.KeyStatusRequest{Name: f.Name})
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) || !errors.Is(err, kms.ErrKeyNotFound) {
				t.Fatalf("%s: key %s: %s", tg.name, f.Name, testnode.DescribeErr(err))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
