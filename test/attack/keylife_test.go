package attack

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// TestKeyLifecycleHostile sends the key lifecycle routes what a tenant
// could: a User whose policy grants only KEY:GENERATE, an Admin reaching
// into another enclave, an unknown identity, and malformed or oversized
// bodies. Each is refused, and the keys stay active, unscheduled and
// without rotation. On the code before the routes, every request gets 404
// and the test fails.
func TestKeyLifecycleHostile(t *testing.T) {
	tn := startAuthnTenants(t, "")
	n := tn.n
	ctx := context.Background()
	root := n.RootClient(t)
	authnMust(t, root.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "other"}))
	authnMust(t, root.CreateKey(ctx, "other", &kms.CreateKeyRequest{Name: "minio-key"}))

	send := func(key mtls.PrivateKey, method, path string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, n.Endpoint()+path, bytes.NewReader(body))
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

	actions := map[string]string{
		"delete":        `{"window":"0s"}`,
		"disable":       `{"all":true}`,
		"cancel-delete": `{"all":true}`,
		"enable":        `{"all":true}`,
		"rotation":      `{"every":"1s"}`,
	}
	for _, tt := range []struct {
		name    string
		caller  mtls.PrivateKey
		enclave string
	}{
		{"unknown caller", tn.unknown, "default"},
		{"user whose policy grants only KEY:GENERATE", tn.user, "default"},
		{"admin in another enclave", tn.admin, "other"},
	} {
		if status, reply := send(tt.caller, http.MethodGet, "/v1/keys/"+tt.enclave+"/minio-key", nil); status != http.StatusForbidden {
			t.Errorf("%s: GET: %d %s, want 403", tt.name, status, reply)
		}
		for action, body := range actions {
			if status, reply := send(tt.caller, http.MethodPut, "/v1/keys/"+tt.enclave+"/minio-key/"+action, []byte(body)); status != http.StatusForbidden {
				t.Errorf("%s: %s: %d %s, want 403", tt.name, action, status, reply)
			}
		}
	}
	for _, tt := range []struct {
		name   string
		path   string
		body   []byte
		status int
	}{
		{"unknown action", "/v1/keys/default/minio-key/destroy", []byte(`{}`), http.StatusNotFound},
		{"malformed JSON", "/v1/keys/default/minio-key/delete", []byte(`{"window":`), http.StatusBadRequest},
		{"negative window", "/v1/keys/default/minio-key/delete", []byte(`{"window":"-1h"}`), http.StatusBadRequest},
		{"window that is no duration", "/v1/keys/default/minio-key/delete", []byte(`{"window":"soon"}`), http.StatusBadRequest},
		{"negative rotation", "/v1/keys/default/minio-key/rotation", []byte(`{"every":"-1h"}`), http.StatusBadRequest},
		{"version and all", "/v1/keys/default/minio-key/disable", []byte(`{"version":1,"all":true}`), http.StatusBadRequest},
		{"body over 4 KiB", "/v1/keys/default/minio-key/disable", bytes.Repeat([]byte(" "), 8<<10), http.StatusRequestEntityTooLarge},
	} {
		if status, reply := send(n.Root, http.MethodPut, tt.path, tt.body); status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, status, reply, tt.status)
		}
	}

	for _, enclave := range []string{"default", "other"} {
		status, reply := send(n.Root, http.MethodGet, "/v1/keys/"+enclave+"/minio-key", nil)
		var info struct {
			RotateEvery string `json:"rotate_every"`
			Versions    []struct {
				State    string  `json:"state"`
				DeleteAt *string `json:"delete_at"`
			} `json:"versions"`
		}
		if status != http.StatusOK || json.Unmarshal([]byte(reply), &info) != nil || len(info.Versions) != 1 {
			t.Fatalf("key of %s after the attempts: %d %s", enclave, status, reply)
		}
		if v := info.Versions[0]; v.State != "active" || v.DeleteAt != nil || info.RotateEvery != "" {
			t.Errorf("key of %s changed: %s", enclave, reply)
		}
	}
}
