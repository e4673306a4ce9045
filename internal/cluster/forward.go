package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ForwardALPN is the TLS application protocol of the writes a follower
// forwards to the leader. A follower keeps one connection to the leader
// and many writes in flight on it, each a frame (frame.go): the request's
// aux field is its timeout in milliseconds, the payload the log entry; the
// reply's payload is a JSON forwardResponse. Frames that queue up while a
// write is under way share one write, where an HTTP/2 request per write
// cost a stream, its frames and a flush each (see "Writes" in
// docs/ARCHITECTURE.md for what that cost the leader).
const ForwardALPN = "keep-forward/1"

// silentLeader is how long a forward connection may go without a reply,
// while a write waits, before it is taken for broken. A live leader
// answers every write within this: it commits, or it steps down and says so
// (raft's leader lease is half a heartbeat timeout).
const silentLeader = 2 * heartbeatTimeout

// forwardConn is a follower's connection to the leader for forwarded
// writes.
type forwardConn struct {
	leader   string
	dialed   chan struct{} // closed when the dial is done; conn and dialErr are set then
	conn     net.Conn
	dialErr  error
	w        *frameWriter
	lastRead atomic.Int64 // when a reply last arrived, in Unix nanoseconds

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan forwardResult // nil once the connection failed
}

type forwardResult struct {
	index uint64
	err   error
}

// forwarder is a follower's side of write forwarding: its one
// connection to the leader, dialed when a write first needs it and again
// when the leader changes or the connection fails, and the writes sent
// over it. The leader's side is serveForwards.
type forwarder struct {
	transport *Transport      // dials the leader
	done      <-chan struct{} // closed when the node shuts down: no connection is dialed after it

	mu   sync.Mutex
	conn *forwardConn // to the leader; nil until needed
}

func newForwarder(transport *Transport, done <-chan struct{}) *forwarder {
	return &forwarder{transport: transport, done: done}
}

// forward hands a log entry to the leader and returns its index.
func (f *forwarder) forward(ctx context.Context, leader string, entry []byte) (uint64, error) {
	c, err := f.connTo(ctx, leader)
	if err != nil {
		return 0, err
	}
	return c.call(ctx, entry)
}

// connTo returns the connection to leader. If there is none, or the last
// one failed, it dials one; writes that come meanwhile wait for that dial
// instead of starting their own.
func (f *forwarder) connTo(ctx context.Context, leader string) (*forwardConn, error) {
	f.mu.Lock()
	select {
	case <-f.done: // close has closed the last connection; dial no new one
		f.mu.Unlock()
		return nil, ErrShuttingDown
	default:
	}
	c := f.conn
	if c == nil || c.leader != leader || c.failed() {
		if c != nil {
			c.close(errors.New("replaced by a connection to the current leader"))
		}
		c = f.dial(leader)
		f.conn = c
	}
	f.mu.Unlock()
	select {
	case <-c.dialed:
	case <-ctx.Done():
		return nil, unreachable(leader, fmt.Errorf("%w: %w", errNotSent, ctx.Err()))
	}
	if c.dialErr != nil {
		return nil, unreachable(leader, fmt.Errorf("%w: %w", errNotSent, c.dialErr))
	}
	return c, nil
}

// dial returns a connection to leader that is being dialed.
func (f *forwarder) dial(leader string) *forwardConn {
	c := &forwardConn{leader: leader, dialed: make(chan struct{}), w: newFrameWriter(), pending: map[uint64]chan forwardResult{}}
	go func() {
		c.conn, c.dialErr = f.transport.dial(context.Background(), leader, ForwardALPN)
		if c.dialErr != nil {
			c.w.close(c.dialErr)
		}
		close(c.dialed)
		if c.dialErr != nil {
			return
		}
		if c.failed() { // closed while dialing
			c.conn.Close()
			return
		}
		go c.w.run(c.conn)
		go c.readReplies()
	}()
	return c
}

// close closes the connection to the leader, failing the writes in flight
// on it; the caller has closed done, so that no new one is dialed.
func (f *forwarder) close() {
	f.mu.Lock()
	if f.conn != nil {
		f.conn.close(ErrShuttingDown)
	}
	f.mu.Unlock()
}

// unreachable is the error of a forwarded write that failed because the
// leader could not be reached or did not answer: the cluster has no
// leader this node can use, for now.
func unreachable(leader string, err error) error {
	return fmt.Errorf("%w: %w: %s: %w", ErrNoLeader, ErrNodeUnavailable, leader, err)
}

// call sends entry and waits for the leader's reply.
func (c *forwardConn) call(ctx context.Context, entry []byte) (uint64, error) {
	timeout := rpcTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	ch := make(chan forwardResult, 1)
	c.mu.Lock()
	if c.pending == nil {
		c.mu.Unlock()
		return 0, unreachable(c.leader, fmt.Errorf("connection closed: %w", errNotSent))
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()

	sent := time.Now().UnixNano()
	f := frame{id: id, aux: uint32(max(timeout.Milliseconds(), 1)), payload: entry} // #nosec G115 -- milliseconds of a request timeout: minutes at most
	if err := c.w.write(appendFrame(make([]byte, 0, frameHeaderSize+len(entry)), f)); err != nil {
		c.forget(id)
		return 0, unreachable(c.leader, err)
	}
	select {
	case r := <-ch:
		return r.index, r.err
	case <-ctx.Done():
		c.forget(id)
		// A leader that has answered nothing for a while, since this write
		// went out, may be gone without a word (a partition): the next
		// write dials anew. A write its client gave up on sooner says
		// nothing about the connection, which other writes share.
		if last := c.lastRead.Load(); last < sent && time.Since(time.Unix(0, sent)) >= silentLeader {
			c.close(errors.New("the leader did not answer"))
		}
		return 0, unreachable(c.leader, fmt.Errorf("no answer in time: %w", ctx.Err()))
	}
}

func (c *forwardConn) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// readReplies delivers the leader's replies until the connection fails,
// then fails the writes still waiting: they may or may not have arrived.
func (c *forwardConn) readReplies() {
	r := bufio.NewReader(c.conn)
	var err error
	for {
		var f frame
		if f, err = readFrame(r, maxRPCBody); err != nil {
			break
		}
		c.lastRead.Store(time.Now().UnixNano())
		var resp forwardResponse
		if err = json.Unmarshal(f.payload, &resp); err != nil {
			err = fmt.Errorf("invalid reply: %w", err)
			break
		}
		c.mu.Lock()
		ch := c.pending[f.id]
		delete(c.pending, f.id)
		c.mu.Unlock()
		if ch != nil {
			ch <- forwardResult{index: resp.Index, err: decodeError(resp.Err)}
		}
	}
	c.close(err)
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, ch := range pending {
		ch <- forwardResult{err: unreachable(c.leader, fmt.Errorf("connection lost: %w", err))}
	}
}

func (c *forwardConn) failed() bool {
	select {
	case <-c.w.broken:
		return true
	default:
		return false
	}
}

// close ends the connection; readReplies then fails the waiting writes.
func (c *forwardConn) close(err error) {
	c.w.close(err)
	select {
	case <-c.dialed:
		if c.conn != nil {
			c.conn.Close()
		}
	default: // the dial closes it when it is done
	}
}

// serveForwards is the leader's side of write forwarding: it serves a
// follower's connection of forwarded writes, each with apply, until the
// follower closes it or done is closed (the node shuts down). Each write is
// applied in its own goroutine, so that raft batches the writes in flight.
func serveForwards(conn net.Conn, done <-chan struct{}, apply func(context.Context, []byte) forwardResponse) {
	w := newFrameWriter()
	go w.run(conn)
	go func() {
		select {
		case <-done:
		case <-w.broken:
		}
		conn.Close() // ends the read below
	}()
	r := bufio.NewReader(conn)
	var wg sync.WaitGroup
	var err error
	for {
		var f frame
		if f, err = readFrame(r, maxForwardEntry); err != nil {
			break
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(f.aux)*time.Millisecond)
			defer cancel()
			body, _ := json.Marshal(apply(ctx, f.payload))
			// A failed write means the follower is gone; it fails the
			// write on its side.
			w.write(appendFrame(make([]byte, 0, frameHeaderSize+len(body)), frame{id: f.id, payload: body}))
		})
	}
	w.close(err)
	wg.Wait()
}
