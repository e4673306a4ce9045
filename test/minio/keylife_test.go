package miniotest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/signer"
)

// emptySHA256 is the SHA-256 of an empty body, as SigV4 signs it.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// TestMinKMSKeyLifecycle disables MinIO's default key in Keep and schedules
// its deletion, through the MinIO KMS API: SSE-S3 objects become
// unreadable and new ones cannot be written, MinIO is not ready, and its
// KMS key status carries Keep's error; enabling the key or cancelling the
// deletion makes everything readable again.
func TestMinKMSKeyLifecycle(t *testing.T) {
	needMinIO(t)
	t.Parallel()
	ca := newCA(t)
	keep := startKeep(t, ca, keepOptions{nodes: 1})
	const enclave, defaultKey = "minio", "minio-default-key"
	apiKey := keep.addEnclaveAdmin(t, enclave)
	m := newMinIO(t, "minkms", keep.ca,
		"MINIO_KMS_SERVER="+keep.server(),
		"MINIO_KMS_API_KEY="+apiKey,
		"MINIO_KMS_ENCLAVE="+enclave,
		"MINIO_KMS_SSE_KEY="+defaultKey,
	)
	s := &scenario{keep: keep, minio: m, enclave: enclave, defaultKey: defaultKey}
	runScenario(t, s, allSteps[0], allSteps[1], allSteps[2], step{"KeyLifecycle", (*scenario).keyLifecycle})
}

// TestKESKeyLifecycle is TestMinKMSKeyLifecycle through the KES API.
func TestKESKeyLifecycle(t *testing.T) {
	needMinIO(t)
	t.Parallel()
	const enclave, defaultKey = "minio-kes", "minio-default-key"
	keep := startKeep(t, newCA(t), keepOptions{nodes: 1, kesEnclave: enclave})
	apiKey := keep.addKESAdmin(t, enclave)
	m := newMinIO(t, "kes", nil,
		"MINIO_KMS_KES_ENDPOINT="+keep.server(),
		"MINIO_KMS_KES_API_KEY="+apiKey,
		"MINIO_KMS_KES_KEY_NAME="+defaultKey,
		"MINIO_KMS_KES_CAPATH="+keep.ca.File,
	)
	s := &scenario{keep: keep, minio: m, enclave: enclave, defaultKey: defaultKey}
	runScenario(t, s, allSteps[0], allSteps[1], allSteps[2], step{"KeyLifecycle", (*scenario).keyLifecycle})
}

// keyLifecycle disables the default key, then enables it; schedules its
// deletion, then cancels it. In between, MinIO serves no SSE-S3 object and
// says why.
func (s *scenario) keyLifecycle(t *testing.T) {
	cases := []struct {
		name    string
		refuse  []string // keep command that makes the key refuse
		restore []string // keep command that restores it
		reason  string   // Keep's error, as MinIO's key status must show it
	}{
		{
			name:    "disabled",
			refuse:  []string{"disable-key", s.defaultKey, "--force"},
			restore: []string{"enable-key", s.defaultKey},
			reason:  "key is disabled: version 1 of key " + s.defaultKey + " is disabled; enable it with 'keep enable-key " + s.defaultKey + " -v 1'",
		},
		{
			name:    "pending deletion",
			refuse:  []string{"rm-key", s.defaultKey, "--yes", "--force", "--window", "1h"},
			restore: []string{"cancel-rm-key", s.defaultKey},
			reason:  "key is pending deletion: version 1 of key " + s.defaultKey + " is destroyed at ",
		},
	}
	for _, tc := range cases {
		s.keepCLI(t, tc.refuse...)
		code, body := s.readiness(t)
		if code == http.StatusOK {
			t.Fatalf("%s: /minio/health/ready answers 200", tc.name)
		}
		t.Logf("%s: /minio/health/ready: %d %s", tc.name, code, body)
		if !strings.Contains(body, "kms:KeyGenerationFailed") {
			t.Errorf("%s: /minio/health/ready does not name the KMS error: %d %s", tc.name, code, body)
		}
		status := s.kmsKeyStatus(t)
		t.Logf("%s: MinIO KMS key status: %+v", tc.name, status)
		if !strings.Contains(status.EncryptionErr, tc.reason) {
			t.Errorf("%s: MinIO's KMS key status says %q, want Keep's error %q", tc.name, status.EncryptionErr, tc.reason)
		}

		c := s.minio.client(1) // no retries: the failures are expected
		for _, name := range []string{"small", "odd"} {
			_, err := s.tryGet(name)
			if err == nil {
				t.Fatalf("%s: GET %s succeeded", tc.name, name)
			}
			var resp minio.ErrorResponse
			if !errors.As(err, &resp) || !strings.HasPrefix(resp.Code, "kms:") {
				t.Errorf("%s: GET %s: %v, want a kms: error", tc.name, name, err)
			} else {
				t.Logf("%s: GET %s: %d %s: %s", tc.name, name, resp.StatusCode, resp.Code, resp.Message)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := c.PutObject(ctx, bucket, "while-"+strings.ReplaceAll(tc.name, " ", "-"), strings.NewReader("x"), 1, minio.PutObjectOptions{})
		cancel()
		if err == nil {
			t.Errorf("%s: PUT to the SSE-S3 bucket succeeded", tc.name)
		}

		s.keepCLI(t, tc.restore...)
		s.minio.waitReady(t)
		if st := s.kmsKeyStatus(t); st.EncryptionErr != "" || st.DecryptionErr != "" {
			t.Errorf("%s, restored: MinIO KMS key status %+v", tc.name, st)
		}
		s.checkAll(t)
		s.put(t, "after-"+strings.ReplaceAll(tc.name, " ", "-"), randomBytes(t, 1000), nil)
		s.checkAll(t)
	}
}

// readiness asks /minio/health/ready with GET, whose error body names
// the error, and returns its status and body.
func (s *scenario) readiness(t *testing.T) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.minio.addr+"/minio/health/ready", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("/minio/health/ready: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, string(body)
}

// kmsKeyStatus is MinIO's KMS key status (madmin.KMSKeyStatus): the
// errors of a test generation and decryption with the default key.
type kmsKeyStatus struct {
	KeyID         string `json:"key-id"`
	EncryptionErr string `json:"encryption-error"`
	DecryptionErr string `json:"decryption-error"`
}

// kmsKeyStatus asks MinIO for the status of its default key, as `mc admin
// kms key status` does: GET /minio/kms/v1/key/status, signed with the
// root credentials.
func (s *scenario) kmsKeyStatus(t *testing.T) kmsKeyStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	u := "http://" + s.minio.addr + "/minio/kms/v1/key/status?key-id=" + url.QueryEscape(s.defaultKey)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	req = signer.SignV4(*req, s.minio.user, s.minio.password, "", "us-east-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("MinIO KMS key status: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var st kmsKeyStatus
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &st) != nil {
		t.Fatalf("MinIO KMS key status: %d %s", resp.StatusCode, body)
	}
	return st
}
