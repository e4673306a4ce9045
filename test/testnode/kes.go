package testnode

import (
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"testing"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kes"
)

// KESAPIKey spells a k1: API key as KES does: kes:v1: and the standard
// base64 of 0x00 followed by the Ed25519 seed. It is computed here, not by
// the server's code, so that tests check the server's spelling.
func KESAPIKey(t testing.TB, k mtls.PrivateKey) kes.APIKey {
	t.Helper()
	priv, ok := k.Private().(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("%T is not an Ed25519 key", k.Private())
	}
	key, err := kes.ParseAPIKey("kes:v1:" + base64.StdEncoding.EncodeToString(append([]byte{0}, priv.Seed()...)))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// KESClient returns a KES client for the node that authenticates with the
// kes:v1: spelling of k, as MinIO in KES mode does.
func (n *Node) KESClient(t testing.TB, k mtls.PrivateKey) *kes.Client {
	t.Helper()
	cert, err := kes.GenerateCertificate(KESAPIKey(t, k))
	if err != nil {
		t.Fatal(err)
	}
	c := kes.NewClientWithConfig(n.Endpoint(), &tls.Config{
		MinVersion:         tls.VersionTLS12,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // #nosec G402 -- the test node's certificate is self-signed
	})
	t.Cleanup(c.HTTPClient.CloseIdleConnections)
	return c
}
