package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// The model of the linearizability check: per key name, whether the key
// exists. Histories are partitioned by key.

type opKind int

const (
	opCreate opKind = iota
	opDelete
	opStatus
)

func (k opKind) String() string { return [...]string{"create", "delete", "status"}[k] }

type linInput struct {
	op  opKind
	key string
}

// outcome of an operation. unknown: it may or may not have been applied
// (transport error, timeout, 503 "may or may not"); its return time is then
// the end of the history. createdOrExists / deletedOrMissing are the
// outcomes "exists" / "not found" of a client that retries on other hosts
// after a transport error (kms-go's load balancer): the retry may have
// found its own first attempt applied.
type outcome int

const (
	ok outcome = iota
	exists
	notFound
	present
	absent
	unknown
	createdOrExists
	deletedOrMissing
)

func (o outcome) String() string {
	return [...]string{"ok", "exists", "not found", "present", "absent", "unknown", "created or exists", "deleted or missing"}[o]
}

type linOutput struct {
	out outcome
}

type linMeta struct {
	node int // -1: kms-go client with every endpoint
	err  string
}

var keyModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(linInput).key
			if _, seen := byKey[k]; !seen {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return false },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(bool), input.(linInput), output.(linOutput).out
		switch in.op {
		case opCreate:
			switch out {
			case ok:
				return !s, true
			case exists:
				return s, s
			case unknown, createdOrExists:
				return true, true
			}
		case opDelete:
			switch out {
			case ok:
				return s, false
			case notFound:
				return !s, false
			case unknown, deletedOrMissing:
				return true, false
			}
		case opStatus:
			switch out {
			case present:
				return s, s
			case absent:
				return !s, s
			}
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		return fmt.Sprintf("%s(%s) → %s", in.op, in.key, out.out)
	},
	DescribeState: func(state any) string {
		if state.(bool) {
			return "exists"
		}
		return "absent"
	},
	DescribeOperationMetadata: func(info any) string {
		m, okm := info.(linMeta)
		if !okm {
			return ""
		}
		where := fmt.Sprintf("node %d", m.node)
		if m.node < 0 {
			where = "every endpoint"
		}
		if m.err != "" {
			return where + ": " + m.err
		}
		return where
	},
}

// recorder collects the history of every client.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []recorded
	notes []porcupine.Annotation
}

type recorded struct {
	op      porcupine.Operation
	node    int
	unknown bool // ambiguous: Return is set at the end
	refused bool // a write the server said certainly did not apply
}

func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

func (r *recorder) add(rec recorded) {
	r.mu.Lock()
	r.ops = append(r.ops, rec)
	r.mu.Unlock()
}

// event annotates the visualization with a fault.
func (r *recorder) event(format string, args ...any) {
	now := r.now()
	r.mu.Lock()
	r.notes = append(r.notes, porcupine.Annotation{Tag: "nemesis", Start: now, End: now, Description: fmt.Sprintf(format, args...), BackgroundColor: "#ffd0d0"})
	r.mu.Unlock()
}

// classify turns a reply into an outcome. Errors that say nothing about
// whether a write applied are unknown; a dial that was refused certainly
// sent nothing (drop); a 503 "cluster has no leader" without further
// detail, or "node is not ready" (a node still starting), is by the
// server's word not applied (refused): unknown in the main checks, left out
// in the strict one.
func classify(op opKind, err error, lb bool) (out outcome, drop, refused bool) {
	if err == nil {
		switch op {
		case opStatus:
			return present, false, false
		default:
			return ok, false, false
		}
	}
	switch {
	case op == opCreate && errors.Is(err, kms.ErrKeyExists):
		if lb {
			return createdOrExists, false, false
		}
		return exists, false, false
	case op == opDelete && errors.Is(err, kms.ErrKeyNotFound):
		if lb {
			return deletedOrMissing, false, false
		}
		return notFound, false, false
	case op == opStatus && errors.Is(err, kms.ErrKeyNotFound):
		return absent, false, false
	case op == opStatus:
		return 0, true, false // a failed read has no effect
	case !lb && strings.Contains(err.Error(), "connect: connection refused"):
		return 0, true, false
	case !lb && testnode.StatusOf(err) == http.StatusServiceUnavailable &&
		(err.Error() == "cluster has no leader: writes are unavailable until a majority of nodes is up" || err.Error() == "node is not ready"):
		return unknown, false, true
	}
	return unknown, false, false
}

var (
	addrRE   = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+(:\d+)?`)
	numberRE = regexp.MustCompile(`\d+`)
)

// errClass is an error text without addresses and numbers, to count errors
// by kind.
func errClass(s string) string {
	return numberRE.ReplaceAllString(addrRE.ReplaceAllString(s, "ADDR"), "N")
}

// TestLinearizability runs concurrent clients that create, delete and read
// a few keys during leader kills and partitions, and checks the history
// with porcupine.
func TestLinearizability(t *testing.T) {
	c := newCluster(t, 3, clusterOpts{proxied: true})
	c.form()
	c.nodes[0].DeleteAtOnce(t) // the model's delete removes the key
	const enclave = "lin"
	noErr(t, c.client().CreateEnclave(ctxT(t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave")
	keys := []string{"a", "b", "c"}

	rec := &recorder{start: time.Now()}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	var uniqMu sync.Mutex
	var uniqueAcked []string
	unexpected := make(chan string, 100)
	var retriedEmpty atomic.Int64

	const directClients = 4
	for id := range directClients + 1 {
		lb := id == directClients // the last client is kms-go with every endpoint
		direct := make([]*kms.Client, len(c.nodes))
		for i := range direct {
			direct[i] = c.client(i)
		}
		every := c.client()
		rnd := rand.New(rand.NewPCG(uint64(id), 7))
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				node := rnd.IntN(len(direct))
				cl := direct[node]
				if lb {
					node, cl = -1, every
				}
				key := keys[rnd.IntN(len(keys))]
				var op opKind
				switch p := rnd.IntN(100); {
				case p < 35:
					op = opCreate
				case p < 60:
					op = opDelete
				case p < 90:
					op = opStatus
				default:
					op, key = opCreate, fmt.Sprintf("u-%d-%d", id, n) // created once, never deleted
				}
				if lb && op == opStatus {
					op = opDelete // the balancer hides which node served a read
				}
				octx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				call := rec.now()
				var err error
				switch op {
				case opCreate:
					err = cl.CreateKey(octx, enclave, &kms.CreateKeyRequest{Name: key})
				case opDelete:
					err = cl.DeleteKey(octx, enclave, &kms.DeleteKeyRequest{Name: key, AllVersions: true})
				case opStatus:
					_, err = cl.KeyStatus(octx, enclave, &kms.KeyStatusRequest{Name: key})
				}
				ret := rec.now()
				cancel()
				out, drop, refused := classify(op, err, lb)
				if lb && testnode.StatusOf(err) == http.StatusBadRequest && strings.Contains(err.Error(), "Content-Length") {
					// kms-go's balancer retried on another host with the
					// body already consumed: the first attempt may have
					// applied, so the outcome is unknown.
					retriedEmpty.Add(1)
				} else if s := testnode.StatusOf(err); s != 0 && s != 404 && s != 409 && s != 503 {
					select {
					case unexpected <- fmt.Sprintf("%s(%s) on node %d: %s", op, key, node, testnode.DescribeErr(err)):
					default:
					}
				}
				if !drop {
					meta := linMeta{node: node}
					if err != nil {
						meta.err = testnode.DescribeErr(err)
					}
					rec.add(recorded{
						op: porcupine.Operation{
							ClientId: id, Input: linInput{op, key}, Output: linOutput{out},
							Call: call, Return: ret, Metadata: meta,
						},
						node: node, unknown: out == unknown, refused: refused,
					})
					if op == opCreate && out == ok && strings.HasPrefix(key, "u-") {
						uniqMu.Lock()
						uniqueAcked = append(uniqueAcked, key)
						uniqMu.Unlock()
					}
				}
				time.Sleep(time.Duration(2+rnd.IntN(8)) * time.Millisecond)
			}
		})
	}

	// The nemesis: two leader kills, the leader cut off, a follower cut off.
	// Reads served by a node while it is cut off (and shortly after) are
	// stale by design (bounded staleness): they are kept out of the check
	// that includes reads.
	type window struct {
		node       int
		start, end int64
	}
	var cutoff []window
	pause := func(d time.Duration) { time.Sleep(d) }
	pause(1500 * time.Millisecond)
	for round := range 2 {
		l := c.lead()
		rec.event("kill -9 leader n%d", l)
		c.nodes[l].Kill()
		pause(2 * time.Second)
		c.nodes[l].MustStart()
		rec.event("n%d restarted", l)
		t.Logf("round %d: killed and restarted leader node %d", round, l)
		pause(1500 * time.Millisecond)
	}
	{
		l := c.waitLeader(0, c.others(), 10*time.Second)
		w := window{node: l, start: rec.now()}
		rec.event("cut off leader n%d (blackhole)", l)
		c.net.isolate(l, blackhole)
		pause(3 * time.Second)
		c.net.heal()
		rec.event("healed")
		w.end = rec.now() + int64(2*time.Second)
		cutoff = append(cutoff, w)
		t.Logf("cut off leader node %d for 3s", l)
		pause(1500 * time.Millisecond)
	}
	{
		l := c.waitLeader(0, c.others(), 10*time.Second)
		f := c.others(l)[rand.IntN(2)]
		w := window{node: f, start: rec.now()}
		rec.event("cut off follower n%d (connections reset)", f)
		c.net.isolate(f, drop)
		pause(2500 * time.Millisecond)
		c.net.heal()
		rec.event("healed")
		w.end = rec.now() + int64(2*time.Second)
		cutoff = append(cutoff, w)
		t.Logf("cut off follower node %d for 2.5s", f)
		pause(1500 * time.Millisecond)
	}
	stop()
	wg.Wait()
	close(unexpected)
	for u := range unexpected {
		t.Errorf("unexpected error: %s", u)
	}

	// Quiesce: a healthy cluster that committed a write of its own term
	// has settled every write still in flight.
	c.waitHealthy(c.others(), 20*time.Second)
	noErr(t, c.client().CreateKey(ctxT(t, 10*time.Second), "", &kms.CreateKeyRequest{Name: "barrier"}), "barrier write")
	c.waitHealthy(c.others(), 10*time.Second)
	end := rec.now()

	// Final reads on every node for every key.
	for i := range c.nodes {
		cl := c.client(i)
		for _, k := range keys {
			call := rec.now()
			ok, err := keyExists(ctxT(t, 10*time.Second), cl, enclave, k)
			noErr(t, err, "final read of %s on node %d", k, i)
			out := absent
			if ok {
				out = present
			}
			rec.add(recorded{op: porcupine.Operation{ClientId: directClients + 1, Input: linInput{opStatus, k}, Output: linOutput{out}, Call: call, Return: rec.now(), Metadata: linMeta{node: i}}, node: i})
		}
	}

	// No acknowledged create of a never-deleted key is lost, on any node.
	lost := 0
	for i := range c.nodes {
		cl := c.client(i)
		for _, k := range uniqueAcked {
			ok, err := keyExists(ctxT(t, 10*time.Second), cl, enclave, k)
			if err != nil || !ok {
				lost++
				t.Errorf("acknowledged create of %s lost on node %d (%v)", k, i, err)
			}
		}
	}

	// Build the histories: ambiguous operations end at the end of the
	// workload. Counting as we go.
	var writes, strictWrites []porcupine.Operation
	var reads, cutoffReads []porcupine.Operation
	ambiguous := map[string]int{}
	var nUnknown, nRefused int
	for _, r := range rec.ops {
		op := r.op
		if r.unknown {
			op.Return = end
			nUnknown++
			ambiguous[errClass(op.Metadata.(linMeta).err)]++
		}
		in := op.Input.(linInput)
		if in.op != opStatus {
			writes = append(writes, op)
			if r.refused {
				nRefused++ // the server says it did not apply: leave it out
			} else {
				strictWrites = append(strictWrites, op)
			}
			continue
		}
		if slices.ContainsFunc(cutoff, func(w window) bool {
			return w.node == r.node && op.Call <= w.end && op.Return >= w.start
		}) {
			cutoffReads = append(cutoffReads, op)
		} else {
			reads = append(reads, op)
		}
	}
	sortOps := func(ops []porcupine.Operation) {
		sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	}
	sortOps(writes)
	sortOps(strictWrites)
	if n := retriedEmpty.Load(); n > 0 {
		t.Logf("kms-go with every endpoint: %d requests retried on another host with an empty body (400 'malformed request … Content-Length')", n)
	}
	t.Logf("history: %d operations (%d writes, %d ambiguous, %d refused (503 'no leader' or 'not ready'), %d reads and %d on cut-off nodes), %d unique keys acknowledged, %d lost",
		len(rec.ops), len(writes), nUnknown, nRefused, len(reads), len(cutoffReads), len(uniqueAcked), lost)

	dir, err := os.MkdirTemp("", "keep-porcupine-")
	noErr(t, err, "temp dir")
	check := func(name string, ops []porcupine.Operation) bool {
		res, info := porcupine.CheckOperationsVerbose(keyModel, ops, 2*time.Minute)
		info.AddAnnotations(rec.notes)
		path := filepath.Join(dir, name+".html")
		if verr := porcupine.VisualizePath(keyModel, info, path); verr != nil {
			t.Logf("visualization of %s: %v", name, verr)
		}
		t.Logf("porcupine, %s (%d operations): %s; visualization: %s", name, len(ops), res, path)
		return res != porcupine.Illegal
	}
	if !check("writes", writes) {
		t.Errorf("the history of creates and deletes is not linearizable: see the visualization above")
	}
	if !check("writes-strict", strictWrites) {
		t.Errorf("with writes that failed with 503 'cluster has no leader' or 'node is not ready' taken as not applied, the history is not linearizable: a write the server reported as not applied was applied")
	}
	if bad := staleReads(writes, reads); len(bad) > 0 {
		t.Errorf("%d of %d reads on healthy nodes saw a state the writes could not have produced during the read (a read missed an acknowledged write, or saw one never made):", len(bad), len(reads))
		for i, r := range bad[:min(len(bad), 5)] {
			t.Logf("  %s, %s, %v–%v, last fault before: %s", keyModel.DescribeOperation(r.Input, r.Output), keyModel.DescribeOperationMetadata(r.Metadata), time.Duration(r.Call), time.Duration(r.Return), lastEvent(rec.notes, r.Call))
			if i == 0 {
				check("stale-read", withRead(writes, r))
			}
		}
	}
	// Reads on cut-off nodes may be stale by design; say how many were.
	t.Logf("reads on cut-off nodes: %d of %d stale (allowed, within max_staleness)", len(staleReads(writes, cutoffReads)), len(cutoffReads))
	var classes []string
	for k, v := range ambiguous {
		classes = append(classes, fmt.Sprintf("%d× %s", v, k))
	}
	sort.Strings(classes)
	t.Logf("ambiguous outcomes: %s", strings.Join(classes, "; "))
	if !t.Failed() {
		os.RemoveAll(dir)
	}
}

// TestKeyModel checks that the model rejects what it must, so that a
// passing linearizability check means something.
func TestKeyModel(t *testing.T) {
	op := func(c int, in linInput, out outcome, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: in, Output: linOutput{out}, Call: call, Return: ret}
	}
	create, del, status := linInput{opCreate, "k"}, linInput{opDelete, "k"}, linInput{opStatus, "k"}
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"create then read", []porcupine.Operation{op(0, create, ok, 0, 10), op(1, status, present, 20, 30)}, true},
		{"lost create", []porcupine.Operation{op(0, create, ok, 0, 10), op(1, status, absent, 20, 30)}, false},
		{"stale read across nodes", []porcupine.Operation{op(0, create, ok, 0, 100), op(1, status, present, 10, 20), op(2, status, absent, 30, 40)}, false},
		{"two creates succeed", []porcupine.Operation{op(0, create, ok, 0, 10), op(1, create, ok, 20, 30)}, false},
		{"concurrent creates", []porcupine.Operation{op(0, create, ok, 0, 10), op(1, create, exists, 5, 30)}, true},
		{"delete missing", []porcupine.Operation{op(0, del, ok, 0, 10)}, false},
		{"ambiguous create may apply", []porcupine.Operation{op(0, create, unknown, 0, 100), op(1, status, present, 20, 30)}, true},
		{"ambiguous create may not apply", []porcupine.Operation{op(0, create, unknown, 0, 100), op(1, status, absent, 20, 30)}, true},
		{"ambiguous create applies once", []porcupine.Operation{op(0, create, unknown, 0, 100), op(1, status, present, 20, 30), op(1, status, absent, 40, 50)}, false},
		{"balancer retry", []porcupine.Operation{op(0, create, createdOrExists, 0, 10), op(1, status, present, 20, 30)}, true},
	} {
		if got := porcupine.CheckOperations(keyModel, tc.ops); got != tc.want {
			t.Errorf("%s: linearizable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// staleReads returns the reads that no linearization of the writes
// explains. Keep promises that a read sees every write acknowledged before
// it began, not that reads on different nodes are linearizable with each
// other: a write becomes visible on each node as that node applies it,
// between commit and acknowledgement, so during a write in flight a read
// on the leader may see it and a read on a follower right after may not.
// Each read is therefore checked on its own against the writes.
func staleReads(writes, reads []porcupine.Operation) []porcupine.Operation {
	var (
		mu  sync.Mutex
		bad []porcupine.Operation
		wg  sync.WaitGroup
	)
	work := make(chan porcupine.Operation)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for r := range work {
				if porcupine.CheckOperations(keyModel, withRead(writes, r)) {
					continue
				}
				mu.Lock()
				bad = append(bad, r)
				mu.Unlock()
			}
		})
	}
	for _, r := range reads {
		work <- r
	}
	close(work)
	wg.Wait()
	sort.Slice(bad, func(i, j int) bool { return bad[i].Call < bad[j].Call })
	return bad
}

// withRead returns the writes of r's key with r among them, in call order.
func withRead(writes []porcupine.Operation, r porcupine.Operation) []porcupine.Operation {
	key := r.Input.(linInput).key
	var ops []porcupine.Operation
	for _, w := range writes {
		if w.Input.(linInput).key == key {
			ops = append(ops, w)
		}
	}
	i := sort.Search(len(ops), func(i int) bool { return ops[i].Call > r.Call })
	return slices.Insert(ops, i, r)
}

// lastEvent names the nemesis event last before t.
func lastEvent(notes []porcupine.Annotation, t int64) string {
	last := "none"
	for _, n := range notes {
		if n.Start <= t {
			last = fmt.Sprintf("%q at %v", n.Description, time.Duration(n.Start))
		}
	}
	return last
}

// TestStaleReads checks the per-read check: it flags a read that missed an
// acknowledged write, and allows reads on two nodes to disagree while the
// write is in flight.
func TestStaleReads(t *testing.T) {
	op := func(in linInput, out outcome, call, ret int64) porcupine.Operation {
		return porcupine.Operation{Input: in, Output: linOutput{out}, Call: call, Return: ret}
	}
	create, del, status := linInput{opCreate, "k"}, linInput{opDelete, "k"}, linInput{opStatus, "k"}
	other := linInput{opCreate, "other"}
	writes := []porcupine.Operation{op(create, ok, 0, 100), op(other, ok, 110, 120), op(del, ok, 200, 300)}
	for _, tc := range []struct {
		name  string
		read  porcupine.Operation
		stale bool
	}{
		{"sees the write in flight", op(status, present, 10, 20), false},
		{"does not yet see the write in flight", op(status, absent, 30, 40), false},
		{"sees the acknowledged write", op(status, present, 150, 160), false},
		{"misses the acknowledged write", op(status, absent, 150, 160), true},
		{"misses the acknowledged delete", op(status, present, 310, 320), true},
		{"sees the delete in flight", op(status, absent, 210, 220), false},
	} {
		got := len(staleReads(writes, []porcupine.Operation{tc.read})) == 1
		if got != tc.stale {
			t.Errorf("%s: stale = %v, want %v", tc.name, got, tc.stale)
		}
	}
}
