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

func testForwarder(t *testing.T) *forwarder {
	t.Helper()
	key, err := mtls.GenerateKeyEdDSA(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTransport("127.0.0.1:1", key, "")
	if err != nil {
		t.Fatal(err)
	}
	return newForwarder(tr, make(chan struct{}))
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

	f := testForwarder(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 10 * time.Millisecond) // writes keep coming
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			defer cancel()
			_, err := f.forward(ctx, ln.Addr().String(), []byte("{}"))
			if !errors.Is(err, ErrNoLeader) || !errors.Is(err, errNotSent) || !neverArrived(err) {
				t.Errorf("forward to a silent leader: %v; want a write that never arrived", err)
			}
		})
	}
	wg.Wait()
	ln.Close()
	f.conn.close(errors.New("test over"))
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
	f := testForwarder(t)
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := f.forward(ctx, addr, []byte("{}"))
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
	f := testForwarder(t)
	leader := fakeLeader(t, f.transport)
	write := func(entry string, timeout time.Duration) (uint64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return f.forward(ctx, leader, []byte(entry))
	}

	if i, err := write("answer", 5*time.Second); err != nil || i != 7 {
		t.Fatalf("answered write: index %d, %v; want 7", i, err)
	}
	first := f.conn
	if _, err := write("silent", 50*time.Millisecond); !errors.Is(err, ErrNodeUnavailable) || neverArrived(err) {
		t.Errorf("unanswered write: %v; want a write that may have arrived", err)
	}
	if f.conn != first || first.failed() {
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
	if i, err := write("answer", 5*time.Second); err != nil || i != 7 || f.conn == first {
		t.Errorf("write after the silent leader: index %d, %v, same connection %v; want 7 on a new connection", i, err, f.conn == first)
	}
}

// forwardLeader serves the forward protocol with serveForwards on a TLS
// listener with tr's node identity, applying each write with apply.
func forwardLeader(t *testing.T, tr *Transport, apply func(context.Context, []byte) forwardResponse) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tr.serverConfig(ForwardALPN))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var served sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		close(done)
		served.Wait()
	})
	served.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			served.Go(func() { serveForwards(c, done, apply) })
		}
	})
	return ln.Addr().String()
}

// TestForwardRoundTrip sends writes from a forwarder to serveForwards: the
// leader's answer (an index, or an error that keeps its identity) comes
// back to the write that asked, and the leader applies each write within
// the timeout of the follower's request.
func TestForwardRoundTrip(t *testing.T) {
	f := testForwarder(t)
	leader := forwardLeader(t, f.transport, func(ctx context.Context, entry []byte) forwardResponse {
		switch string(entry) {
		case "exists":
			return forwardResponse{Err: encodeError(fmt.Errorf("key %q: %w", "k", state.ErrKeyExists))}
		case "no leader":
			return forwardResponse{Err: encodeError(ErrNoLeader)}
		case "leadership lost":
			return forwardResponse{Index: 9, Err: encodeError(ErrLeadershipLost)}
		case "deadline":
			d, ok := ctx.Deadline()
			if !ok || time.Until(d) > 5*time.Second {
				return forwardResponse{Err: encodeError(errors.New("no deadline from the request"))}
			}
			return forwardResponse{Index: 3}
		}
		return forwardResponse{Index: 7}
	})
	for _, tc := range []struct {
		entry     string
		wantIndex uint64
		wantErr   error
	}{
		{"write", 7, nil},
		{"exists", 0, state.ErrKeyExists},
		{"no leader", 0, ErrNoLeader},
		{"leadership lost", 9, ErrLeadershipLost},
		{"deadline", 3, nil},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		index, err := f.forward(ctx, leader, []byte(tc.entry))
		cancel()
		if index != tc.wantIndex || (tc.wantErr == nil && err != nil) || !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: index %d, %v; want %d, %v", tc.entry, index, err, tc.wantIndex, tc.wantErr)
		}
	}
	f.conn.mu.Lock()
	defer f.conn.mu.Unlock()
	if n := len(f.conn.pending); n != 0 {
		t.Errorf("%d writes left pending", n)
	}
}

// TestForwarderClose checks shutdown: close fails the writes in flight,
// as writes that may have arrived, and no write dials the leader after it.
func TestForwarderClose(t *testing.T) {
	done := make(chan struct{})
	f := testForwarder(t)
	f.done = done
	leader := fakeLeader(t, f.transport)
	if _, err := f.forward(context.Background(), leader, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	inFlight := make(chan error, 1)
	go func() {
		_, err := f.forward(context.Background(), leader, []byte("silent"))
		inFlight <- err
	}()
	for pending := 0; pending == 0; time.Sleep(time.Millisecond) { // the write is on its way
		f.conn.mu.Lock()
		pending = len(f.conn.pending)
		f.conn.mu.Unlock()
	}
	close(done)
	f.close()
	select {
	case err := <-inFlight:
		if !errors.Is(err, ErrNodeUnavailable) || neverArrived(err) {
			t.Errorf("write in flight at shutdown: %v; want one that may have arrived", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write in flight outlived the forwarder's close")
	}
	if _, err := f.forward(context.Background(), leader, []byte("answer")); !errors.Is(err, ErrShuttingDown) {
		t.Errorf("write after close: %v; want %v", err, ErrShuttingDown)
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
