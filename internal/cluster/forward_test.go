package cluster

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"aead.dev/mtls"
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
