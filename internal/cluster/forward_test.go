package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"aead.dev/mtls"

	"github.com/keep-kms/keep/internal/state"
)

func testForwarder(t *testing.T) *Node {
	t.Helper()
	key, err := mtls.GenerateKeyEdDSA(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTransport("127.0.0.1:1", key, "")
	if err != nil {
		t.Fatal(err)
	}
	return &Node{cfg: Config{Transport: tr}}
}

// TestForwardDialIsShared checks that writes arriving while the connection
// to a silent leader is being dialed wait for that one dial, each within
// its own deadline, instead of each dialing in turn; and that they fail as
// writes that were never sent, which a follower may retry.
func TestForwardDialIsShared(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var dials atomic.Int64
	var accepted sync.WaitGroup
	accepted.Go(func() { // accepts, and never answers the TLS handshake
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			conns = append(conns, c)
		}
	})

	n := testForwarder(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 10 * time.Millisecond) // writes keep coming
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			_, err := n.forward(ctx, ln.Addr().String(), []byte("{}"))
			if !errors.Is(err, ErrNoLeader) || !errors.Is(err, errNotSent) || !neverArrived(err) {
				t.Errorf("forward to a silent leader: %v; want a write that never arrived", err)
			}
		})
	}
	wg.Wait()
	ln.Close()
	n.fwd.close(errors.New("test over"))
	accepted.Wait()
	if d := dials.Load(); d != 1 {
		t.Errorf("16 writes dialed the leader %d times, want once", d)
	}
}

// TestForwardRefused checks a leader that refuses connections: the write
// fails at once, as never sent, and the next write dials again.
func TestForwardRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	n := testForwarder(t)
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := n.forward(ctx, addr, []byte("{}"))
		cancel()
		if !errors.Is(err, ErrNodeUnavailable) || !neverArrived(err) {
			t.Errorf("forward to a closed port: %v; want a write that never arrived", err)
		}
	}
}

// fakeLeader serves the forward protocol on a TLS listener with tr's node
// identity: it answers a write whose entry is "answer" with index 7, and
// never answers any other.
func fakeLeader(t *testing.T, tr *Transport) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tr.serverConfig(ForwardALPN))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					f, err := readFrame(r, 1<<10)
					if err != nil {
						return
					}
					if string(f.payload) == "answer" {
						c.Write(appendFrame(nil, frame{id: f.id, payload: []byte(`{"index":7}`)}))
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestForwardSilentLeader checks when a forward connection is given up: not
// when a write's client gives up early, which says nothing of the
// connection other writes share, but when the leader has answered nothing
// for silentLeader.
func TestForwardSilentLeader(t *testing.T) {
	n := testForwarder(t)
	leader := fakeLeader(t, n.cfg.Transport)
	write := func(entry string, timeout time.Duration) (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return n.forward(ctx, leader, []byte(entry))
	}

	if i, err := write("answer", 5*time.Second); err != nil || i != 7 {
		t.Fatalf("answered write: index %d, %v; want 7", i, err)
	}
	first := n.fwd
	if _, err := write("silent", 50*time.Millisecond); !errors.Is(err, ErrNodeUnavailable) || neverArrived(err) {
		t.Errorf("unanswered write: %v; want a write that may have arrived", err)
	}
	if n.fwd != first || first.failed() {
		t.Fatal("a write whose client gave up early closed the connection")
	}
	if i, err := write("answer", 5*time.Second); err != nil || i != 7 {
		t.Fatalf("answered write after an early give-up: index %d, %v; want 7", i, err)
	}
	if _, err := write("silent", silentLeader+100*time.Millisecond); err == nil {
		t.Fatal("unanswered write succeeded")
	}
	if !first.failed() {
		t.Error("the connection outlived a leader silent for longer than silentLeader")
	}
	if i, err := write("answer", 5*time.Second); err != nil || i != 7 || n.fwd == first {
		t.Errorf("write after the silent leader: index %d, %v, same connection %v; want 7 on a new connection", i, err, n.fwd == first)
	}
}

// TestServeForwardWhileStarting checks that a node whose raft does not run
// yet (Open registers the forward service first) refuses a forwarded
// write as one without a leader instead of crashing: a follower forwards
// to a restarted node that led before it was killed.
func TestServeForwardWhileStarting(t *testing.T) {
	n := testForwarder(t)
	resp := n.serveForward(context.Background(), []byte("entry"))
	if err := decodeError(resp.Err); !errors.Is(err, ErrNoLeader) {
		t.Errorf("forward to a starting node: %v, want %v", err, ErrNoLeader)
	}
}

// TestWireErrors sends every wire error, wrapped, across the node
// transport's encoding: it arrives as itself. A version conflict must
// arrive as one, and still as ErrKeyExists: sent as ErrKeyExists alone, the
// follower did not seal again and answered a create with 409 for a key
// that did not exist.
func TestWireErrors(t *testing.T) {
	for _, w := range wireErrors {
		got := decodeError(encodeError(fmt.Errorf("context: %w", w.err)))
		if !errors.Is(got, w.err) {
			t.Errorf("%v arrives as %v (%T)", w.err, got, errors.Unwrap(got))
		}
	}
	got := decodeError(encodeError(fmt.Errorf("%w: version 2 of key %q was sealed, but the next version is 1", state.ErrVersionConflict, "k")))
	if !errors.Is(got, state.ErrVersionConflict) || !errors.Is(got, state.ErrKeyExists) {
		t.Errorf("a version conflict arrives as %v", errors.Unwrap(got))
	}
}
