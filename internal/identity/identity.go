// Package identity is Keep's one authentication function: who the peer of
// a TLS connection is. The MinIO KMS API, the KES API and the node
// transport all ask it, so that they cannot disagree.
//
// The identity of a peer is the SHA-256 of the public key of the first
// certificate it sent: the leaf, the only certificate whose private key the
// handshake proved (the peer signs the handshake with it). Any further
// certificates are chains the peer claims, signed by keys nobody checked;
// they are never looked at, whatever they are marked as.
package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync"

	"aead.dev/mtls"
)

// Peer returns the identity of the peer of a TLS connection, or the zero
// identity when it sent no certificate.
func Peer(cs *tls.ConnectionState) mtls.Identity {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return mtls.Identity{}
	}
	return mtls.CertificateIdentity(cs.PeerCertificates[0])
}

// Of returns the identity of the client of r in its h1: spelling, or ""
// when the client sent no certificate (or r came without TLS). The hash is
// computed once per connection when the server's ConnContext is
// ConnContext, not once per request.
func Of(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	leaf := r.TLS.PeerCertificates[0]
	c, _ := r.Context().Value(connKey{}).(*connIdentity)
	if c == nil {
		return mtls.CertificateIdentity(leaf).String()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.leaf != leaf {
		c.leaf, c.identity = leaf, mtls.CertificateIdentity(leaf).String()
	}
	return c.identity
}

// connKey is the context key of a connection's connIdentity.
type connKey struct{}

// connIdentity remembers the identity of a connection's client
// certificate. The leaf is compared by pointer: a connection keeps its
// certificates, so the hash is computed on its first request only.
type connIdentity struct {
	mu       sync.Mutex
	leaf     *x509.Certificate
	identity string
}

// ConnContext is http.Server.ConnContext for a server that calls Of: it
// gives each connection a place to remember its client's identity.
func ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, new(connIdentity))
}
