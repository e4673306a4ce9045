package attack

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// kesKeyFile is a KES key file of the oldest format, {"bytes":…}, holding
// 32 bytes of material b.
func kesKeyFile(b byte) []byte {
	return []byte(`{"bytes":"` + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32)) + `"}`)
}

// TestKESImportHostile sends the KES import route what a tenant or a
// damaged keystore could: imports by callers who may not import, files too
// large, malformed or made to overwrite a key, names that are no key
// names. Each is refused with a clear status, leaves no key behind, and no
// reply repeats key material; the key that was there still decrypts what
// it encrypted.
func TestKESImportHostile(t *testing.T) {
	tn := startAuthnTenants(t, "")
	n := tn.n
	ctx := context.Background()
	root := n.RootClient(t)

	put := func(key mtls.PrivateKey, path string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, n.Endpoint()+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := testnode.HTTPClient(t, key, 30*time.Second).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		reply, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(reply)
	}

	// A KES key that is there, with a ciphertext of it.
	if status, reply := put(n.Root, "/v1/kes/import/default/kes-key", kesKeyFile(1)); status != http.StatusOK {
		t.Fatalf("import: %d %s", status, reply)
	}
	g, err := root.GenerateKey(ctx, "default", &kms.GenerateKeyRequest{Name: "kes-key", AssociatedData: []byte("c")})
	if err != nil {
		t.Fatal(testnode.DescribeErr(err))
	}

	material := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	tests := []struct {
		name   string
		caller mtls.PrivateKey
		path   string
		body   []byte
		status int
	}{
		{"unknown caller", tn.unknown, "/v1/kes/import/default/new-key", kesKeyFile(2), http.StatusForbidden},
		{"user without KEY:IMPORT", tn.user, "/v1/kes/import/default/minio-new", kesKeyFile(2), http.StatusForbidden},
		{"admin in another enclave", tn.admin, "/v1/kes/import/other/new-key", kesKeyFile(2), http.StatusForbidden},
		{"enclave that does not exist", n.Root, "/v1/kes/import/nowhere/new-key", kesKeyFile(2), http.StatusNotFound},
		{"overwrite with other material", n.Root, "/v1/kes/import/default/kes-key", kesKeyFile(2), http.StatusConflict},
		{"overwrite a Keep key", tn.admin, "/v1/kes/import/default/minio-key", kesKeyFile(2), http.StatusConflict},
		{"file over 1 MiB", n.Root, "/v1/kes/import/default/new-key", append(kesKeyFile(2), bytes.Repeat([]byte(" "), 1<<20)...), http.StatusRequestEntityTooLarge},
		{"empty file", n.Root, "/v1/kes/import/default/new-key", nil, http.StatusBadRequest},
		{"random bytes", n.Root, "/v1/kes/import/default/new-key", bytes.Repeat([]byte{0x95, 0x7b}, 500), http.StatusBadRequest},
		{"31 bytes of material", n.Root, "/v1/kes/import/default/new-key", []byte(`{"bytes":"` + base64.StdEncoding.EncodeToString(make([]byte, 31)) + `"}`), http.StatusBadRequest},
		{"unknown algorithm", n.Root, "/v1/kes/import/default/new-key", []byte(`{"bytes":"` + material + `","algorithm":"DES"}`), http.StatusBadRequest},
		{"name with an escaped slash", n.Root, "/v1/kes/import/default/a%2Fb", kesKeyFile(2), http.StatusBadRequest},
		{"dry-run that is no flag", n.Root, "/v1/kes/import/default/new-key?dry-run=maybe", kesKeyFile(2), http.StatusBadRequest},
	}
	for _, tt := range tests {
		status, reply := put(tt.caller, tt.path, tt.body)
		if status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, status, reply, tt.status)
		}
		if strings.Contains(reply, material) || strings.Contains(reply, base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))) {
			t.Errorf("%s: the reply holds key material: %s", tt.name, reply)
		}
	}
	for _, name := range []string{"new-key", "minio-new", "a/b"} {
		if _, err := root.KeyStatus(ctx, "default", &kms.KeyStatusRequest{Name: name}); testnode.StatusOf(err) != http.StatusNotFound {
			t.Errorf("key %q after the refused imports: %s", name, testnode.DescribeErr(err))
		}
	}
	d, err := root.Decrypt(ctx, "default", &kms.DecryptRequest{Name: "kes-key", Ciphertext: g[0].Ciphertext, AssociatedData: []byte("c")})
	if err != nil || !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
		t.Fatalf("the KES key after the attempts to overwrite it: %s", testnode.DescribeErr(err))
	}

	// The same file again changes nothing, and says so.
	status, reply := put(n.Root, "/v1/kes/import/default/kes-key", kesKeyFile(1))
	var res struct{ Status string }
	if status != http.StatusOK || json.Unmarshal([]byte(reply), &res) != nil || res.Status != "exists" {
		t.Errorf("the same KES key again: %d %s", status, reply)
	}
}
