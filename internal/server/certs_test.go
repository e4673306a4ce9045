package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a self-signed certificate valid for validity and its
// key to certFile and keyFile, and returns the certificate.
func writePair(t *testing.T, certFile, keyFile string, validity time.Duration) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(validity),
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path string, block *pem.Block) {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	write(keyFile, &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestCertStoreReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "public.crt"), filepath.Join(dir, "private.key")
	first := writePair(t, certFile, keyFile, 24*time.Hour)
	p, err := loadPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s := &certStore{pairs: []*certPair{p}}
	served := func() *x509.Certificate {
		c, err := s.getCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf
	}
	if !served().Equal(first) {
		t.Fatal("the store does not serve the loaded certificate")
	}
	if list := s.certificates(); len(list) != 1 || list[0].Name != certFile || !list[0].NotAfter.Equal(first.NotAfter) {
		t.Errorf("certificates() = %+v", list)
	}

	// Unchanged files: nothing to do.
	if changed, err := p.reload(); changed || err != nil {
		t.Errorf("reload of unchanged files: %v, %v", changed, err)
	}

	// A certificate whose key is not there yet keeps the old one served.
	otherDir := t.TempDir()
	second := writePair(t, filepath.Join(otherDir, "c"), filepath.Join(otherDir, "k"), 90*24*time.Hour)
	copyFile(t, filepath.Join(otherDir, "c"), certFile)
	s.check()
	if !served().Equal(first) || p.failed == "" {
		t.Errorf("a certificate without its key: served %v, failure %q; want the old one and a failure", served().Subject, p.failed)
	}

	// With its key, the new certificate is served.
	copyFile(t, filepath.Join(otherDir, "k"), keyFile)
	s.check()
	if !served().Equal(second) || p.failed != "" {
		t.Errorf("after rotation: served %v (failure %q), want the new certificate", served().SerialNumber, p.failed)
	}
}

func TestCertStoreExpiryWarning(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "public.crt"), filepath.Join(dir, "private.key")
	writePair(t, certFile, keyFile, 24*time.Hour)
	p, err := loadPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	p.warnExpiry(now)
	if !p.warned.Equal(now) {
		t.Fatal("no warning for a certificate that expires in 24 hours")
	}
	p.warnExpiry(now.Add(time.Minute))
	if !p.warned.Equal(now) {
		t.Error("warned again within the hour")
	}
	p.warnExpiry(now.Add(expiryWarningInterval))
	if p.warned.Equal(now) {
		t.Error("not warned again after an hour")
	}

	writePair(t, certFile, keyFile, 30*24*time.Hour)
	long, err := loadPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	long.warnExpiry(now)
	if !long.warned.IsZero() {
		t.Error("warned of a certificate valid for 30 days")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
