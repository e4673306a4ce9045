package server

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Connections without a client certificate can only reach the public
// routes (/version, the health probes, and the metrics when
// metrics.auth=public), so they need little: at most maxAnonymousConns at
// once, each for at most anonymousConnLifetime. A client that sent a
// certificate is not limited here (the rate limit is per identity).
const (
	maxAnonymousConns     = 128
	anonymousConnLifetime = 30 * time.Second
)

// errTooManyAnonymous refuses the handshake of a connection without a
// client certificate while maxAnonymousConns are open.
var errTooManyAnonymous = errors.New("too many connections without a client certificate: present one")

// anonymousGuard counts the open connections without a client
// certificate and closes each when its time is up.
type anonymousGuard struct {
	max      int64
	lifetime time.Duration
	open     atomic.Int64
}

// listener wraps ln so that the guard sees every connection it accepts.
func (g *anonymousGuard) listener(ln net.Listener) net.Listener {
	return guardedListener{Listener: ln, g: g}
}

// config returns the TLS configuration of a client connection accepted
// by the guard's listener: base, whose VerifyConnection admits a
// connection without a client certificate only within the guard's limit.
// It clones base per handshake, which costs next to nothing beside the
// handshake itself.
func (g *anonymousGuard) config(base *tls.Config, hello *tls.ClientHelloInfo) *tls.Config {
	gc, ok := hello.Conn.(*guardedConn)
	if !ok {
		return nil
	}
	conf := base.Clone()
	conf.GetConfigForClient = nil
	conf.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			return nil
		}
		return gc.admitAnonymous()
	}
	return conf
}

type guardedListener struct {
	net.Listener
	g *anonymousGuard
}

func (l guardedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardedConn{Conn: c, g: l.g}, nil
}

// guardedConn is an accepted connection; once admitted without a client
// certificate it counts against the guard until it is closed, and is
// closed when its lifetime ends.
type guardedConn struct {
	net.Conn
	g *anonymousGuard

	mu      sync.Mutex
	counted bool
	closed  bool
	timer   *time.Timer
}

func (c *guardedConn) admitAnonymous() error {
	if c.g.open.Add(1) > c.g.max {
		c.g.open.Add(-1)
		return errTooManyAnonymous
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		c.g.open.Add(-1)
		return net.ErrClosed
	}
	c.counted = true
	c.timer = time.AfterFunc(c.g.lifetime, func() { c.Close() })
	return nil
}

func (c *guardedConn) Close() error {
	c.mu.Lock()
	if c.counted {
		c.counted = false
		c.g.open.Add(-1)
		c.timer.Stop()
	}
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}
