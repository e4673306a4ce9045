package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"aead.dev/mtls"
	"github.com/hashicorp/raft"
	"github.com/minio/kms-go/kms"
)

// ALPN is the TLS application protocol of raft traffic between nodes. Peers
// share the API port with clients; the protocol tells the connections apart.
const ALPN = "keep-raft/1"

// Transport is raft's stream layer over mutually authenticated TLS on the
// API port. Both ends present the node certificate derived from the shared
// HSM key and accept only a peer that presents the same identity, so only
// nodes holding the cluster's HSM key can take part.
type Transport struct {
	addr     net.Addr
	cert     tls.Certificate
	identity mtls.Identity

	conns     chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

// NewTransport returns a Transport that advertises host (host:port) and
// authenticates with nodeKey.
func NewTransport(host string, nodeKey mtls.PrivateKey) (*Transport, error) {
	// Peers check each other by identity, not by chain or key usage, so the
	// client certificate kms-go makes for an API key serves both ends.
	cert, err := kms.GenerateCertificate(nodeKey, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to create node certificate: %w", err)
	}
	return &Transport{
		addr:     hostAddr(host),
		cert:     cert,
		identity: nodeKey.Identity(),
		conns:    make(chan net.Conn),
		closed:   make(chan struct{}),
	}, nil
}

// TLSConfig returns the server-side TLS configuration for raft connections;
// the API server switches to it when a client offers ALPN.
func (t *Transport) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{t.cert},
		ClientAuth:       tls.RequireAnyClientCert,
		NextProtos:       []string{ALPN},
		VerifyConnection: t.verifyPeer,
	}
}

// verifyPeer accepts only peers that present the node identity.
func (t *Transport) verifyPeer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("cluster: peer presented no certificate")
	}
	if mtls.CertificateIdentity(cs.PeerCertificates[0]) != t.identity {
		return errors.New("cluster: peer is not a node of this cluster (different HSM key)")
	}
	return nil
}

// ServeConn hands a TLS connection that negotiated ALPN to raft and blocks
// until raft closes it. net/http calls it through Server.TLSNextProto and
// closes the connection when it returns.
func (t *Transport) ServeConn(c *tls.Conn) {
	if c.ConnectionState().NegotiatedProtocol != ALPN {
		return
	}
	done := make(chan struct{})
	conn := &handedConn{Conn: c, done: done}
	select {
	case t.conns <- conn:
		select {
		case <-done:
		case <-t.closed:
		}
	case <-t.closed:
	}
}

// handedConn signals ServeConn when raft closes the connection.
type handedConn struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (c *handedConn) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

// Accept waits for the next raft connection from a peer.
func (t *Transport) Accept() (net.Conn, error) {
	select {
	case c := <-t.conns:
		return c, nil
	case <-t.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting raft connections.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() { close(t.closed) })
	return nil
}

// Addr is the advertised address of this node.
func (t *Transport) Addr() net.Addr { return t.addr }

// Dial opens a raft connection to a peer.
func (t *Transport) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{t.cert},
		NextProtos:         []string{ALPN},
		InsecureSkipVerify: true, // the peer is verified by identity in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != ALPN {
				return fmt.Errorf("cluster: %s does not speak %s", address, ALPN)
			}
			return t.verifyPeer(cs)
		},
	}}
	return d.DialContext(ctx, "tcp", string(address))
}

// hostAddr is the advertised host:port as a net.Addr; raft only prints it.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }
