package cluster_test

import (
	"bytes"
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
	opGenerate // a data key under the key: a read of whether it exists
	opDecrypt  // of a data key generated under the key: a read too
)

func (k opKind) String() string {
	return [...]string{"create", "delete", "status", "generate", "decrypt"}[k]
}

// read reports whether k only reads whether a key exists.
func (k opKind) read() bool { return k >= opStatus }

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
		case opStatus, opGenerate, opDecrypt:
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
		if op.read() {
			return present, false, false
		}
		return ok, false, false
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
	case op.read() && errors.Is(err, kms.ErrKeyNotFound):
		return absent, false, false
	case op.read():
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
	w := startWorkload(c, "lin", false)

	// The nemesis: two leader kills, the leader cut off, a follower cut off.
	// Reads served by a node while it is cut off (and shortly after) are
	// stale by design (bounded staleness): they are kept out of the check
	// that includes reads.
	pause := func(d time.Duration) { time.Sleep(d) }
	pause(1500 * time.Millisecond)
	for round := range 2 {
		l := c.lead()
		w.rec.event("kill -9 leader n%d", l)
		c.nodes[l].Kill()
		pause(2 * time.Second)
		c.nodes[l].MustStart()
		w.rec.event("n%d restarted", l)
		t.Logf("round %d: killed and restarted leader node %d", round, l)
		pause(1500 * time.Millisecond)
	}
	{
		l := c.waitLeader(0, c.others(), 10*time.Second)
		end := w.cutOff(l, "cut off leader n%d (blackhole)", l)
		c.net.isolate(l, blackhole)
		pause(3 * time.Second)
		c.net.heal()
		end()
		t.Logf("cut off leader node %d for 3s", l)
		pause(1500 * time.Millisecond)
	}
	{
		l := c.waitLeader(0, c.others(), 10*time.Second)
		f := c.others(l)[rand.IntN(2)]
		end := w.cutOff(f, "cut off follower n%d (connections reset)", f)
		c.net.isolate(f, drop)
		pause(2500 * time.Millisecond)
		c.net.heal()
		end()
		t.Logf("cut off follower node %d for 2.5s", f)
		pause(1500 * time.Millisecond)
	}
	w.check(t)
}

// window is a time during which a node's reads may be stale by design: it
// was cut off from the others, or its links were faulty.
type window struct {
	node       int
	start, end int64
}

// directClients is the number of a workload's clients that call one node
// at a time; one more calls kms-go with every endpoint.
const directClients = 4

// workload is the client load of a linearizability check: clients that
// create, delete and read (key status) a few keys in one enclave and
// create keys that are never deleted; with crypto, they also generate data
// keys under those and decrypt them, as reads of the key's existence whose
// plaintext must not change. Start it with startWorkload, run faults, and
// end it with check.
type workload struct {
	c       *cluster
	enclave string
	keys    []string // created and deleted by every client
	rec     *recorder
	stop    context.CancelFunc
	wg      sync.WaitGroup

	mu          sync.Mutex
	uniqueAcked []string  // acknowledged creates of never-deleted keys
	deks        []dataKey // generated under them
	cutoff      []window

	unexpected   chan string
	retriedEmpty atomic.Int64
}

// dataKey is a data key generated under a key that is never deleted.
type dataKey struct {
	key                   string
	ciphertext, plaintext []byte
}

// workloadStats counts what a workload's check checked.
type workloadStats struct {
	ops, writes, reads, ambiguous, acked, decrypts int
	violations                                     int
}

// startWorkload creates enclave through c and starts the clients on it;
// deletes must be immediate (DeleteAtOnce).
func startWorkload(c *cluster, enclave string, crypto bool) *workload {
	c.t.Helper()
	noErr(c.t, c.client().CreateEnclave(ctxT(c.t, 10*time.Second), &kms.CreateEnclaveRequest{Name: enclave}), "create enclave %s", enclave)
	w := &workload{
		c:          c,
		enclave:    enclave,
		keys:       []string{"a", "b", "c"},
		rec:        &recorder{start: time.Now()},
		unexpected: make(chan string, 100),
	}
	var ctx context.Context
	ctx, w.stop = context.WithCancel(context.Background())
	for id := range directClients + 1 {
		lb := id == directClients // the last client is kms-go with every endpoint
		direct := make([]*kms.Client, len(c.nodes))
		for i := range direct {
			direct[i] = c.client(i)
		}
		every := c.client()
		rnd := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
		w.wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				node := rnd.IntN(len(direct))
				cl := direct[node]
				if lb {
					node, cl = -1, every
				}
				if crypto && rnd.IntN(100) < 30 {
					w.cryptoOp(id, node, cl, rnd)
				} else {
					w.keyOp(id, n, node, cl, rnd, lb)
				}
				time.Sleep(time.Duration(2+rnd.IntN(8)) * time.Millisecond)
			}
		})
	}
	return w
}

// keyOp creates, deletes or reads a key, or creates a key never deleted.
func (w *workload) keyOp(id, n, node int, cl *kms.Client, rnd *rand.Rand, lb bool) {
	key := w.keys[rnd.IntN(len(w.keys))]
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
	call := w.rec.now()
	var err error
	switch op {
	case opCreate:
		err = cl.CreateKey(octx, w.enclave, &kms.CreateKeyRequest{Name: key})
	case opDelete:
		err = cl.DeleteKey(octx, w.enclave, &kms.DeleteKeyRequest{Name: key, AllVersions: true})
	case opStatus:
		_, err = cl.KeyStatus(octx, w.enclave, &kms.KeyStatusRequest{Name: key})
	}
	ret := w.rec.now()
	cancel()
	w.checkErr(op, key, node, err, lb, 404, 409, 503)
	if w.record(id, node, op, key, call, ret, err, lb) && op == opCreate && strings.HasPrefix(key, "u-") {
		w.mu.Lock()
		w.uniqueAcked = append(w.uniqueAcked, key)
		w.mu.Unlock()
	}
}

// cryptoOp generates a data key under a never-deleted key, or decrypts
// one generated before; the decrypted plaintext must be the generated one.
// With every endpoint, nothing is recorded: the balancer hides which node
// served the read.
func (w *workload) cryptoOp(id, node int, cl *kms.Client, rnd *rand.Rand) {
	w.mu.Lock()
	var key string
	var dk dataKey
	decrypt := len(w.deks) > 0 && rnd.IntN(2) == 0
	switch {
	case decrypt:
		dk = w.deks[rnd.IntN(len(w.deks))]
		key = dk.key
	case len(w.uniqueAcked) > 0:
		key = w.uniqueAcked[rnd.IntN(len(w.uniqueAcked))]
	}
	w.mu.Unlock()
	if key == "" {
		return
	}
	octx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	call := w.rec.now()
	op := opGenerate
	var err error
	if decrypt {
		op = opDecrypt
		var pt []*kms.DecryptResponse
		if pt, err = cl.Decrypt(octx, w.enclave, &kms.DecryptRequest{Name: key, Ciphertext: dk.ciphertext}); err == nil && !bytes.Equal(pt[0].Plaintext, dk.plaintext) {
			w.unexpect("decrypt of a data key of %s on node %d: another plaintext", key, node)
		}
	} else {
		var g []*kms.GenerateKeyResponse
		if g, err = cl.GenerateKey(octx, w.enclave, &kms.GenerateKeyRequest{Name: key}); err == nil {
			w.mu.Lock()
			w.deks = append(w.deks, dataKey{key, g[0].Ciphertext, g[0].Plaintext})
			w.mu.Unlock()
		}
	}
	ret := w.rec.now()
	w.checkErr(op, key, node, err, node < 0, 404, 503)
	if node >= 0 {
		w.record(id, node, op, key, call, ret, err, false)
	}
}

// record adds an operation to the history, unless it certainly had no
// effect, and returns whether it was acknowledged (ok, or present).
func (w *workload) record(id, node int, op opKind, key string, call, ret int64, err error, lb bool) (acked bool) {
	out, drop, refused := classify(op, err, lb)
	if drop {
		return false
	}
	meta := linMeta{node: node}
	if err != nil {
		meta.err = testnode.DescribeErr(err)
	}
	w.rec.add(recorded{
		op: porcupine.Operation{
			ClientId: id, Input: linInput{op, key}, Output: linOutput{out},
			Call: call, Return: ret, Metadata: meta,
		},
		node: node, unknown: out == unknown, refused: refused,
	})
	return out == ok || out == present
}

// checkErr notes err as unexpected unless it is a transport error or has
// one of the expected HTTP statuses.
func (w *workload) checkErr(op opKind, key string, node int, err error, lb bool, expected ...int) {
	s := testnode.StatusOf(err)
	switch {
	case lb && testnode.ResentEmpty(err):
		// kms-go's balancer retried on another host with the body
		// already consumed: the first attempt may have applied, so the
		// outcome is unknown.
		w.retriedEmpty.Add(1)
	case s != 0 && !slices.Contains(expected, s):
		w.unexpect("%s(%s) on node %d: %s", op, key, node, testnode.DescribeErr(err))
	}
}

func (w *workload) unexpect(format string, args ...any) {
	select {
	case w.unexpected <- fmt.Sprintf(format, args...):
	default:
	}
}

// cutOff notes that node's reads may be stale from now until 2 s after
// the returned function is called (the fault healed).
func (w *workload) cutOff(node int, format string, args ...any) (healed func()) {
	start := w.rec.now()
	w.rec.event(format, args...)
	return func() {
		w.rec.event("healed")
		w.mu.Lock()
		w.cutoff = append(w.cutoff, window{node: node, start: start, end: w.rec.now() + int64(2*time.Second)})
		w.mu.Unlock()
	}
}

// check stops the clients, waits until every node of the cluster is
// healthy, reads every key and data key on every node, and checks the
// history: no acknowledged create is lost, the writes are linearizable,
// and reads on healthy nodes miss no acknowledged write.
func (w *workload) check(t *testing.T) workloadStats {
	t.Helper()
	c := w.c.with(t)
	w.stop()
	w.wg.Wait()
	var st workloadStats
	for {
		select {
		case u := <-w.unexpected:
			t.Errorf("unexpected error: %s", u)
			st.violations++
			continue
		default:
		}
		break
	}

	// Quiesce: a healthy cluster that committed a write of its own term
	// has settled every write still in flight.
	c.waitHealthy(c.others(), 30*time.Second)
	noErr(t, c.client().CreateKey(ctxT(t, 10*time.Second), "", &kms.CreateKeyRequest{Name: fmt.Sprintf("barrier-%s-%d", w.enclave, time.Now().UnixNano())}), "barrier write")
	c.waitHealthy(c.others(), 10*time.Second)
	end := w.rec.now()

	// Final reads on every node for every key.
	for i := range c.nodes {
		cl := c.client(i)
		for _, k := range w.keys {
			call := w.rec.now()
			ok, err := keyExists(ctxT(t, 10*time.Second), cl, w.enclave, k)
			noErr(t, err, "final read of %s on node %d", k, i)
			out := absent
			if ok {
				out = present
			}
			w.rec.add(recorded{op: porcupine.Operation{ClientId: directClients + 1, Input: linInput{opStatus, k}, Output: linOutput{out}, Call: call, Return: w.rec.now(), Metadata: linMeta{node: i}}, node: i})
		}
	}

	// No acknowledged create of a never-deleted key is lost, on any node,
	// and every data key generated under one decrypts to its plaintext.
	lost := 0
	for i := range c.nodes {
		cl := c.client(i)
		for _, k := range w.uniqueAcked {
			ok, err := keyExists(ctxT(t, 10*time.Second), cl, w.enclave, k)
			if err != nil || !ok {
				lost++
				t.Errorf("acknowledged create of %s lost on node %d (%v)", k, i, err)
			}
		}
		for _, dk := range w.deks {
			pt, err := cl.Decrypt(ctxT(t, 10*time.Second), w.enclave, &kms.DecryptRequest{Name: dk.key, Ciphertext: dk.ciphertext})
			st.decrypts++
			if err != nil || !bytes.Equal(pt[0].Plaintext, dk.plaintext) {
				st.violations++
				t.Errorf("a data key of %s does not decrypt on node %d to its plaintext (%v)", dk.key, i, err)
			}
		}
	}
	st.violations += lost

	// Build the histories: ambiguous operations end at the end of the
	// workload. Counting as we go.
	var writes, strictWrites []porcupine.Operation
	var reads, cutoffReads []porcupine.Operation
	ambiguous := map[string]int{}
	var nRefused int
	for _, r := range w.rec.ops {
		op := r.op
		if r.unknown {
			op.Return = end
			st.ambiguous++
			ambiguous[errClass(op.Metadata.(linMeta).err)]++
		}
		in := op.Input.(linInput)
		if !in.op.read() {
			writes = append(writes, op)
			if r.refused {
				nRefused++ // the server says it did not apply: leave it out
			} else {
				strictWrites = append(strictWrites, op)
			}
			continue
		}
		if slices.ContainsFunc(w.cutoff, func(cw window) bool {
			return cw.node == r.node && op.Call <= cw.end && op.Return >= cw.start
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
	st.ops, st.writes, st.reads, st.acked = len(w.rec.ops), len(writes), len(reads)+len(cutoffReads), len(w.uniqueAcked)
	if n := w.retriedEmpty.Load(); n > 0 {
		t.Logf("kms-go with every endpoint: %d requests retried on another host with an empty body (400 'malformed request … Content-Length')", n)
	}
	t.Logf("history: %d operations (%d writes, %d ambiguous, %d refused (503 'no leader' or 'not ready'), %d reads and %d on cut-off nodes), %d unique keys acknowledged, %d lost, %d data keys decrypted at the end",
		len(w.rec.ops), len(writes), st.ambiguous, nRefused, len(reads), len(cutoffReads), len(w.uniqueAcked), lost, st.decrypts)

	dir, err := os.MkdirTemp("", "keep-porcupine-")
	noErr(t, err, "temp dir")
	check := func(name string, ops []porcupine.Operation) bool {
		res, info := porcupine.CheckOperationsVerbose(keyModel, ops, 2*time.Minute)
		info.AddAnnotations(w.rec.notes)
		path := filepath.Join(dir, name+".html")
		if verr := porcupine.VisualizePath(keyModel, info, path); verr != nil {
			t.Logf("visualization of %s: %v", name, verr)
		}
		t.Logf("porcupine, %s (%d operations): %s; visualization: %s", name, len(ops), res, path)
		return res != porcupine.Illegal
	}
	if !check("writes", writes) {
		st.violations++
		t.Errorf("the history of creates and deletes is not linearizable: see the visualization above")
	}
	if !check("writes-strict", strictWrites) {
		st.violations++
		t.Errorf("with writes that failed with 503 'cluster has no leader' or 'node is not ready' taken as not applied, the history is not linearizable: a write the server reported as not applied was applied")
	}
	if bad := staleReads(writes, reads); len(bad) > 0 {
		st.violations += len(bad)
		t.Errorf("%d of %d reads on healthy nodes saw a state the writes could not have produced during the read (a read missed an acknowledged write, or saw one never made):", len(bad), len(reads))
		for i, r := range bad[:min(len(bad), 5)] {
			t.Logf("  %s, %s, %v–%v, last fault before: %s", keyModel.DescribeOperation(r.Input, r.Output), keyModel.DescribeOperationMetadata(r.Metadata), time.Duration(r.Call), time.Duration(r.Return), lastEvent(w.rec.notes, r.Call))
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
	return st
}

// TestKeyModel checks that the model rejects what it must, so that a
// passing linearizability check means something.
func TestKeyModel(t *testing.T) {
	op := func(c int, in linInput, out outcome, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: c, Input: in, Output: linOutput{out}, Call: call, Return: ret}
	}
	create, del, status := linInput{opCreate, "k"}, linInput{opDelete, "k"}, linInput{opStatus, "k"}
	generate, decrypt := linInput{opGenerate, "k"}, linInput{opDecrypt, "k"}
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
		{"generate after create", []porcupine.Operation{op(0, create, ok, 0, 10), op(1, generate, present, 20, 30)}, true},
		{"generate misses create", []porcupine.Operation{op(0, create, ok, 0, 10), op(1, generate, absent, 20, 30)}, false},
		{"decrypt after delete", []porcupine.Operation{op(0, create, ok, 0, 10), op(0, del, ok, 20, 30), op(1, decrypt, present, 40, 50)}, false},
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
