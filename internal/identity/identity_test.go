package identity

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"aead.dev/mtls"
)

// certificate makes a certificate for pub, signed by signer (self-signed
// when signer's public key is pub), marked as a CA or not.
func certificate(t *testing.T, pub crypto.PublicKey, signer crypto.Signer, parent *x509.Certificate, isCA bool) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// handshake runs a TLS handshake in which the client presents chain with
// the private key key, and returns the identity the server sees.
func handshake(t *testing.T, chain []*x509.Certificate, key crypto.PrivateKey) (mtls.Identity, error) {
	t.Helper()
	serverKey := newKey(t)
	serverCert := certificate(t, serverKey.Public(), serverKey, nil, false)
	clientCert := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		clientCert.Certificate = append(clientCert.Certificate, c.Raw)
	}
	cc, sc := net.Pipe()
	defer cc.Close()
	defer sc.Close()
	srv := tls.Server(sc, &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey}},
		ClientAuth:   tls.RequestClientCert,
	})
	cli := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{clientCert}})
	errc := make(chan error, 1)
	go func() {
		err := cli.Handshake()
		errc <- err
		io.Copy(io.Discard, cli) // reads the server's alert, if any: net.Pipe does not buffer
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.HandshakeContext(ctx); err != nil {
		cc.Close()
		<-errc
		return mtls.Identity{}, err
	}
	<-errc
	cs := srv.ConnectionState()
	return Peer(&cs), nil
}

// TestPeerForgedChains sends the chains an attacker builds to be taken
// for a victim whose public key it knows: only the key the attacker holds
// is ever its identity, or the handshake fails.
func TestPeerForgedChains(t *testing.T) {
	attacker, victim := newKey(t), newKey(t)
	ownCA := certificate(t, attacker.Public(), attacker, nil, true)
	own := certificate(t, attacker.Public(), attacker, nil, false)
	victimCert := certificate(t, victim.Public(), attacker, ownCA, false) // victim's key, signed by the attacker
	victimCA := certificate(t, victim.Public(), attacker, ownCA, true)
	attackerID, victimID := mtls.CertificateIdentity(own), mtls.CertificateIdentity(victimCert)

	tests := []struct {
		name  string
		chain []*x509.Certificate
		want  mtls.Identity // zero: the handshake must fail
	}{
		{"own cert alone", []*x509.Certificate{own}, attackerID},
		{"own self-signed CA alone", []*x509.Certificate{ownCA}, attackerID},
		{"own CA, then victim-key cert", []*x509.Certificate{ownCA, victimCert}, attackerID},
		{"own cert, then victim-key CA", []*x509.Certificate{own, victimCA}, attackerID},
		{"own cert, victim-key cert, own CA", []*x509.Certificate{own, victimCert, ownCA}, attackerID},
		{"victim-key cert, then own CA", []*x509.Certificate{victimCert, ownCA}, mtls.Identity{}},
		{"victim-key CA, then own cert", []*x509.Certificate{victimCA, own}, mtls.Identity{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := handshake(t, tt.chain, attacker)
			if tt.want.IsZero() {
				if err == nil {
					t.Fatalf("handshake succeeded with identity %v; want it refused", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if got == victimID {
				t.Fatal("the attacker was taken for the victim")
			}
			if got != tt.want {
				t.Fatalf("identity %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPeerNone(t *testing.T) {
	if id := Peer(nil); !id.IsZero() {
		t.Errorf("Peer(nil) = %v", id)
	}
	if id := Peer(&tls.ConnectionState{}); !id.IsZero() {
		t.Errorf("Peer without certificates = %v", id)
	}
}

func TestOf(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	c1 := certificate(t, k1.Public(), k1, nil, false)
	c2 := certificate(t, k2.Public(), k2, nil, true)
	tests := []struct {
		name   string
		tls    *tls.ConnectionState
		cached bool
		want   string
	}{
		{"no TLS", nil, false, ""},
		{"no certificate", &tls.ConnectionState{}, true, ""},
		{"leaf", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c1, c2}}, false, mtls.CertificateIdentity(c1).String()},
		{"leaf, cached", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c1, c2}}, true, mtls.CertificateIdentity(c1).String()},
		{"CA leaf", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{c2, c1}}, true, mtls.CertificateIdentity(c2).String()},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.TLS = tt.tls
		if tt.cached {
			r = r.WithContext(ConnContext(r.Context(), nil))
		}
		for range 2 { // the second time from the cache
			if got := Of(r); got != tt.want {
				t.Errorf("%s: Of = %q, want %q", tt.name, got, tt.want)
			}
		}
	}
}
