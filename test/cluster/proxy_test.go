package cluster_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/keep-kms/keep/test/testnode"
)

// network is a set of TCP proxies, one in front of each node, that carry
// all traffic between nodes (raft and /v1/rpc): every node's --host is its
// proxy's address. A proxy knows which node calls by the source IP of the
// connection (nodes dial from their listen IP) and can cut the connections
// of any (from, to) pair of nodes, either by resetting them (drop: as if
// the peer's port were closed) or by silently discarding their traffic
// (blackhole: as a lost network does, so that peers see timeouts). Cutting
// only (i, j) is a one-way partition: i cannot reach j, j still reaches i.
//
// A link fault (setFault) slows the bytes that flow from one node to the
// other, whoever opened the connection: a delay with jitter, and loss. The
// proxies carry TCP streams, where a lost packet is resent after the
// retransmission timeout, not missing: a lost chunk arrives rtoLoss late,
// behind it the rest of the stream; it can also reset the connection.
type network struct {
	t       testing.TB
	mu      sync.Mutex
	byIP    map[string]int // node listen IP → node index
	proxies map[int]*proxy // node index → its proxy
	cut     map[pair]cutMode
	faults  map[pair]linkFault // by direction of the data, not of the dial
	conns   map[*pconn]struct{}
}

// linkFault degrades the data from one node to another.
type linkFault struct {
	delay, jitter time.Duration // each chunk arrives delay ± jitter late
	loss          float64       // chance that a chunk is lost and resent after rtoLoss
	reset         float64       // chance that a chunk resets the connection
}

// rtoLoss is how late a lost chunk arrives: Linux's minimum TCP
// retransmission timeout.
const rtoLoss = 200 * time.Millisecond

// String describes f for the logs.
func (f linkFault) String() string {
	return fmt.Sprintf("delay %v±%v, loss %.0f%%, reset %.1f%%", f.delay, f.jitter, 100*f.loss, 100*f.reset)
}

type pair struct{ from, to int }

type cutMode int

const (
	open      cutMode = iota
	drop              // connections are reset
	blackhole         // connections hang, data is discarded
)

type proxy struct {
	n      *network
	to     int
	target string // the node's real --address
	ln     net.Listener
}

// pconn is one proxied connection from node from to node to.
type pconn struct {
	from, to       int
	client, server net.Conn
	once           sync.Once
}

func (c *pconn) close() {
	c.once.Do(func() {
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

func newNetwork(t testing.TB) *network {
	n := &network{
		t:       t,
		byIP:    map[string]int{},
		proxies: map[int]*proxy{},
		cut:     map[pair]cutMode{},
		faults:  map[pair]linkFault{},
		conns:   map[*pconn]struct{}{},
	}
	t.Cleanup(n.close)
	return n
}

// addProxy starts the proxy for node i, whose real address is target, on
// a fresh loopback address and returns that address: the node's --host.
func (n *network) addProxy(t testing.TB, i int, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", testnode.AllocAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{n: n, to: i, target: target, ln: ln}
	n.mu.Lock()
	n.byIP[testnode.IPOf(target)] = i
	n.proxies[i] = p
	n.mu.Unlock()
	go p.serve()
	return ln.Addr().String()
}

func (n *network) close() {
	n.mu.Lock()
	for _, p := range n.proxies {
		p.ln.Close()
	}
	for c := range n.conns {
		c.close()
	}
	n.mu.Unlock()
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *proxy) handle(client net.Conn) {
	n := p.n
	from := -1
	if a, ok := client.RemoteAddr().(*net.TCPAddr); ok {
		n.mu.Lock()
		if i, ok := n.byIP[a.IP.String()]; ok {
			from = i
		}
		n.mu.Unlock()
	}
	c := &pconn{from: from, to: p.to, client: client}
	n.mu.Lock()
	mode := n.cut[pair{from, p.to}]
	n.conns[c] = struct{}{}
	n.mu.Unlock()
	defer func() {
		c.close()
		n.mu.Lock()
		delete(n.conns, c)
		n.mu.Unlock()
	}()
	switch mode {
	case drop:
		return
	case blackhole:
		io.Copy(io.Discard, client) // until healed (closed) or the caller gives up
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return // the node is down: the caller sees the connection close
	}
	n.mu.Lock()
	c.server = server
	_, alive := n.conns[c]
	n.mu.Unlock()
	if !alive {
		server.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { n.pipe(c, server, client); done <- struct{}{} }()
	go func() { n.pipe(c, client, server); done <- struct{}{} }()
	<-done
}

// pipe copies src to dst while the pair is open, through a delay line
// that applies the link fault of the data's direction; while the pair is
// blackholed it discards what it reads. Data from the dialer flows from
// c.from to c.to; the replies flow back.
func (n *network) pipe(c *pconn, dst, src net.Conn) {
	dir := pair{c.from, c.to}
	if src == c.server {
		dir = pair{c.to, c.from}
	}
	type chunk struct {
		b   []byte
		due time.Time
	}
	line := make(chan chunk, 64)
	go func() {
		defer close(line)
		var last time.Time // chunks keep their order, as a stream does
		buf := make([]byte, 32<<10)
		for {
			k, err := src.Read(buf)
			if k > 0 {
				n.mu.Lock()
				mode, f := n.cut[pair{c.from, c.to}], n.faults[dir]
				n.mu.Unlock()
				if f.reset > 0 && rand.Float64() < f.reset {
					c.close()
					return
				}
				if mode == open {
					due := time.Now().Add(f.lag())
					if due.Before(last) {
						due = last
					}
					last = due
					line <- chunk{append([]byte(nil), buf[:k]...), due}
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for ch := range line {
		time.Sleep(time.Until(ch.due))
		if _, err := dst.Write(ch.b); err != nil {
			break
		}
	}
	c.close() // EOF, closed or reset: the other direction ends too
	for range line {
	}
}

// lag is how late f delivers one chunk.
func (f linkFault) lag() time.Duration {
	d := f.delay
	if f.jitter > 0 {
		d += time.Duration(rand.Int64N(int64(2*f.jitter))) - f.jitter
	}
	if f.loss > 0 && rand.Float64() < f.loss {
		d += rtoLoss
	}
	return max(d, 0)
}

// setFault sets the fault of the data flowing in each of the directions;
// the zero linkFault clears it.
func (n *network) setFault(dirs []pair, f linkFault) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, d := range dirs {
		if f == (linkFault{}) {
			delete(n.faults, d)
		} else {
			n.faults[d] = f
		}
	}
}

// setCut sets the mode of the pairs and applies it to their connections:
// dropped ones are closed at once, blackholed ones stall (pipe discards),
// and on healing, stalled ones are closed, so that peers reconnect.
func (n *network) setCut(pairs []pair, mode cutMode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	set := map[pair]bool{}
	for _, p := range pairs {
		prev := n.cut[p]
		if mode == open {
			delete(n.cut, p)
		} else {
			n.cut[p] = mode
		}
		if mode == drop || (mode == open && prev == blackhole) {
			set[p] = true
		}
	}
	for c := range n.conns {
		if set[pair{c.from, c.to}] {
			c.close()
		}
	}
}

// isolate cuts node i off from all others, both ways.
func (n *network) isolate(i int, mode cutMode) {
	var pairs []pair
	n.mu.Lock()
	for j := range n.proxies {
		if j != i {
			pairs = append(pairs, pair{i, j}, pair{j, i})
		}
	}
	n.mu.Unlock()
	n.setCut(pairs, mode)
}

// heal opens every pair and clears every link fault.
func (n *network) heal() {
	n.mu.Lock()
	var pairs []pair
	for p := range n.cut {
		pairs = append(pairs, p)
	}
	clear(n.faults)
	n.mu.Unlock()
	n.setCut(pairs, open)
}
