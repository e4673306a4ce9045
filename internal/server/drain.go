package server

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keep-kms/keep/internal/cluster"
)

// drainWait bounds how long a stopping node waits for its clients'
// connections to close. It covers the slowest request plus the second
// net/http's HTTP/2 server waits after a graceful GOAWAY before it closes
// a connection whose streams are done.
const drainWait = 10 * time.Second

// clientConns tracks the connections of API clients (not those of peers),
// so that a stopping node answers every request a client sent before it
// closes them. kms-go (and MinIO) go to another server only after a
// transport error, never after a 503, and their retry sends a request body
// that the failed attempt consumed: a request cut off mid-stream reaches
// the next server empty. A request on a connection that has not closed may
// be in flight, so only a closed connection is a finished one.
type clientConns struct {
	mu    sync.Mutex
	conns map[net.Conn]bool // true for a client's connection, false for a peer's
	open  int               // connections in conns that are clients'
}

// track is the server's ConnState hook. net/http calls it with StateActive
// or StateIdle once a connection carries requests (after its handshake:
// HTTP/2 calls it from the connection's serve loop when the first stream
// opens, before that stream's handler runs) and with StateClosed or
// StateHijacked when it ends. The raft and forwarding connections that
// TLSNextProto takes never report active or idle.
func (c *clientConns) track(nc net.Conn, s http.ConnState) {
	switch s {
	case http.StateActive, http.StateIdle:
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.conns[nc]; ok {
			return
		}
		if c.conns == nil {
			c.conns = make(map[net.Conn]bool)
		}
		client := isClientConn(nc)
		c.conns[nc] = client
		if client {
			c.open++
		}
	case http.StateClosed, http.StateHijacked:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.conns[nc] {
			c.open--
		}
		delete(c.conns, nc)
	}
}

// isClientConn reports whether nc is a client's connection: peers name
// cluster.RPCServerName in their handshake (see cluster.Transport).
func isClientConn(nc net.Conn) bool {
	tc, ok := nc.(*tls.Conn)
	return !ok || tc.ConnectionState().ServerName != cluster.RPCServerName
}

// count returns the number of open client connections.
func (c *clientConns) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open
}

// drain refuses new client connections, tells connected clients to go
// (HTTP/2 GOAWAY, idle HTTP/1 connections closed) and waits, bounded by
// drainWait, until their connections have closed: each closes once the
// requests sent on it before the GOAWAY are answered.
func (c *clientConns) drain(srv *http.Server, serving *atomic.Bool) {
	serving.Store(false)
	go shutdown(srv)
	deadline := time.Now().Add(drainWait)
	for c.count() > 0 {
		if time.Now().After(deadline) {
			slog.Warn("stopping with client connections still open: requests on them are cut off", "connections", c.count(), "waited", drainWait)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
