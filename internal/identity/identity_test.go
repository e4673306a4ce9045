package identity

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/keep-kms/keep/test/testnode"
)

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
	serverCert := testnode.Certificate(t, serverKey.Public(), serverKey, nil, false)
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
	ownCA := testnode.Certificate(t, attacker.Public(), attacker, nil, true)
	own := testnode.Certificate(t, attacker.Public(), attacker, nil, false)
	victimCert := testnode.Certificate(t, victim.Public(), attacker, ownCA, false) // victim's key, signed by the attacker
	victimCA := testnode.Certificate(t, victim.Public(), attacker, ownCA, true)
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
	c1 := testnode.Certificate(t, k1.Public(), k1, nil, false)
	c2 := testnode.Certificate(t, k2.Public(), k2, nil, true)
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
