package miniotest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keep-kms/keep/test/testnode"
)

// testCA is the certificate authority that signs the Keep nodes' server
// certificates, as an operator's CA would. MinIO trusts it through its
// certs dir (CAs/) or MINIO_KMS_KES_CAPATH; the keep CLI through
// SSL_CERT_FILE.
type testCA struct {
	*testnode.CA
	File string // its PEM certificate
}

func newCA(t testing.TB) *testCA {
	t.Helper()
	ca := testnode.NewCA(t, "Keep test CA")
	file := filepath.Join(t.TempDir(), "ca.crt")
	writePEM(t, file, ca.CertPEM)
	return &testCA{CA: ca, File: file}
}

// issue writes a server certificate for the IP address ip, signed by the
// CA, and its private key to dir/public.crt and dir/private.key.
func (ca *testCA) issue(t testing.TB, dir, ip string) (certFile, keyFile string) {
	t.Helper()
	leaf := ca.Issue(t, ip, 0)
	certFile, keyFile = filepath.Join(dir, "public.crt"), filepath.Join(dir, "private.key")
	writePEM(t, certFile, leaf.CertPEM)
	writePEM(t, keyFile, leaf.KeyPEM)
	return certFile, keyFile
}

func writePEM(t testing.TB, file string, data []byte) {
	t.Helper()
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
