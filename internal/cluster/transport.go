package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"aead.dev/mtls"
	"github.com/hashicorp/raft"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/internal/identity"
)

// ALPN is the TLS application protocol of raft traffic between nodes. Peers
// share the API port with clients; the protocol tells the connections apart.
const ALPN = "keep-raft/1"

// RPCServerName is the TLS server name nodes send when they call each
// other's /v1/rpc endpoints: the listener then presents the node
// certificate and requires the caller's. The .invalid top-level domain is
// reserved, so it never clashes with a real host name.
const RPCServerName = "node.keep.invalid"

// errNotNode is the handshake error for a peer without the cluster's node
// identity, which means it holds another HSM key.
var errNotNode = errors.New("peer is not a node of this cluster: it holds none of this cluster's HSM keys")

// Transport carries traffic between nodes over mutually authenticated TLS
// on the API port: raft's stream layer (ALPN keep-raft/1), forwarded writes
// (ALPN keep-forward/1) and the /v1/rpc calls. Both ends present the node
// certificate derived from the shared HSM key and accept only a peer that
// presents the same identity, so only nodes holding the cluster's HSM key
// take part.
type Transport struct {
	addr     net.Addr
	cert     tls.Certificate
	identity mtls.Identity
	client   *http.Client // for /v1/rpc calls to peers
	dialer   *net.Dialer

	trusted atomic.Pointer[func(mtls.Identity) bool] // other node identities accepted; see Trust
	joins   atomic.Pointer[func() bool]              // see AdmitJoins

	mu       sync.Mutex
	stream   *stream        // where ServeConn delivers raft connections; nil while raft is down
	forwards func(net.Conn) // serves ForwardALPN connections; nil until a node does
}

// NewTransport returns a Transport that advertises host (host:port) and
// authenticates with nodeKey. If localIP is a specific address, connections
// to peers leave from it: the address the node listens on is the one its
// peers (and their firewalls) see.
func NewTransport(host string, nodeKey mtls.PrivateKey, localIP string) (*Transport, error) {
	// Peers check each other by identity, not by chain or key usage, so the
	// client certificate kms-go makes for an API key serves both ends.
	cert, err := kms.GenerateCertificate(nodeKey, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to create node certificate: %w", err)
	}
	t := &Transport{addr: hostAddr(host), cert: cert, identity: nodeKey.Identity(), dialer: &net.Dialer{Timeout: 2 * time.Second}}
	if ip := net.ParseIP(localIP); ip != nil && !ip.IsUnspecified() {
		t.dialer.LocalAddr = &net.TCPAddr{IP: ip}
	}
	t.client = &http.Client{
		// No overall timeout: the applied-index stream lives long; every
		// other call has a deadline (see Node.call).
		Transport: &http.Transport{
			TLSClientConfig:     t.clientConfig(RPCServerName, "h2", "http/1.1"),
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     time.Minute,
			TLSHandshakeTimeout: 5 * time.Second,
			DialContext:         t.dialer.DialContext,
		},
	}
	return t, nil
}

// Identity is the identity every node presents.
func (t *Transport) Identity() mtls.Identity { return t.identity }

// ServerConfig returns the TLS configuration the listener uses for a
// connection from another node, or nil for a client connection.
func (t *Transport) ServerConfig(hello *tls.ClientHelloInfo) *tls.Config {
	for _, p := range hello.SupportedProtos {
		if p == ALPN || p == ForwardALPN {
			return t.serverConfig(p)
		}
	}
	if hello.ServerName == RPCServerName {
		c := t.serverConfig("h2", "http/1.1")
		c.VerifyConnection = t.verifyPeerOrJoiner
		return c
	}
	return nil
}

// AdmitJoins lets a peer whose node identity this node does not know make
// /v1/rpc calls while f reports true (the node is fresh): a node of an HSM
// it does not have may ask it to join a cluster. The RPC handler lets such
// a peer ask that and nothing else, and the join checks that it holds the
// cluster's root key.
func (t *Transport) AdmitJoins(f func() bool) { t.joins.Store(&f) }

// verifyPeerOrJoiner is verifyPeer, or any peer with a certificate while
// AdmitJoins says so.
func (t *Transport) verifyPeerOrJoiner(cs tls.ConnectionState) error {
	err := t.verifyPeer(cs)
	if err == nil {
		return nil
	}
	if f := t.joins.Load(); f != nil && (*f)() && !identity.Peer(&cs).IsZero() {
		return nil
	}
	return err
}

func (t *Transport) serverConfig(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{t.cert},
		ClientAuth:       tls.RequireAnyClientCert,
		NextProtos:       protos,
		VerifyConnection: t.verifyPeer,
	}
}

func (t *Transport) clientConfig(serverName string, protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		ServerName:         serverName,
		Certificates:       []tls.Certificate{t.cert},
		NextProtos:         protos,
		InsecureSkipVerify: true, // #nosec G402 -- nodes have no CA: verifyPeer (VerifyConnection) admits only the node identity derived from the HSM key
		VerifyConnection:   t.verifyPeer,
	}
}

// Trust makes the transport accept, besides its own identity, the peers
// whose identity f accepts: the node identities of the cluster's other
// HSMs, whose nodes present another certificate than this one's.
func (t *Transport) Trust(f func(mtls.Identity) bool) { t.trusted.Store(&f) }

// verifyPeer accepts only peers that present the node identity of one of
// the cluster's HSMs (as identity.Peer tells it, the one authentication
// function).
func (t *Transport) verifyPeer(cs tls.ConnectionState) error {
	id := identity.Peer(&cs)
	switch {
	case id.IsZero():
		return errNotNode
	case id == t.identity:
		return nil
	}
	if f := t.trusted.Load(); f != nil && (*f)(id) {
		return nil
	}
	return errNotNode
}

// IsNode reports whether a request came from a node of this cluster.
func (t *Transport) IsNode(r *http.Request) bool {
	return r.TLS != nil && t.verifyPeer(*r.TLS) == nil
}

// ServeConn serves a TLS connection from a peer that negotiated ALPN
// (handed to raft) or ForwardALPN, and blocks until it is done with it.
// net/http calls it through Server.TLSNextProto and closes the connection
// when it returns.
func (t *Transport) ServeConn(c *tls.Conn) {
	t.mu.Lock()
	s, forwards := t.stream, t.forwards
	t.mu.Unlock()
	switch c.ConnectionState().NegotiatedProtocol {
	case ForwardALPN:
		if forwards != nil {
			forwards(c)
		}
	case ALPN:
		if s != nil {
			s.serve(c)
		}
	}
}

// serveForwards makes ServeConn hand ForwardALPN connections to f.
func (t *Transport) serveForwards(f func(net.Conn)) {
	t.mu.Lock()
	t.forwards = f
	t.mu.Unlock()
}

// serve hands c to raft and returns when raft or the stream closes it.
func (s *stream) serve(c *tls.Conn) {
	conn := &handedConn{Conn: c, done: make(chan struct{})}
	select {
	case s.conns <- conn:
		select {
		case <-conn.done:
		case <-s.closed:
		}
	case <-s.closed:
	}
}

// listen returns a fresh raft stream layer that receives the connections
// ServeConn hands over. Each raft instance gets its own, because raft closes
// its stream layer when it shuts down.
func (t *Transport) listen() *stream {
	s := &stream{t: t, conns: make(chan net.Conn), closed: make(chan struct{})}
	t.mu.Lock()
	t.stream = s
	t.mu.Unlock()
	return s
}

// stream is raft's StreamLayer for one raft instance.
type stream struct {
	t         *Transport
	conns     chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

func (s *stream) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

func (s *stream) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.t.mu.Lock()
		if s.t.stream == s {
			s.t.stream = nil
		}
		s.t.mu.Unlock()
	})
	return nil
}

func (s *stream) Addr() net.Addr { return s.t.addr }

// Dial opens a raft connection to a peer.
func (s *stream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.t.dial(ctx, string(address), ALPN)
}

// dial opens a connection to the peer at address that speaks proto (an
// ALPN protocol). The dialer's timeout bounds the connect and the
// handshake.
func (t *Transport) dial(ctx context.Context, address, proto string) (net.Conn, error) {
	d := tls.Dialer{NetDialer: t.dialer, Config: t.clientConfig("", proto)}
	return d.DialContext(ctx, "tcp", address)
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

// hostAddr is the advertised host:port as a net.Addr; raft only prints it.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }
