package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
	"github.com/keep-kms/keep/test/testnode"
)

// restartDataFormat names what a cached data directory of BenchmarkRestart
// holds: the snapshot envelope format (state's format 2) and the version of
// the recipe below. Change it when either changes, so that a cache built
// before is not used.
const restartDataFormat = "snap2-build1"

// restartData is a data directory of one node that holds Keys keys made
// in-process and Tail more made through the API after its last snapshot,
// and what a benchmark needs to start and check it. It is stored as
// restart.json beside the directory.
type restartData struct {
	Dir    string `json:"-"` // the data directory
	Keys   int    `json:"keys"`
	Tail   int    `json:"tail"`
	HSMKey string `json:"hsm_key"` // a throw-away soft HSM key of the benchmark
	Host   string `json:"host"`    // the node's --host, as the raft configuration knows it
	// Checks are data keys generated through the API before the last stop:
	// a restarted node must decrypt them.
	Checks []restartCheck `json:"checks"`
}

type restartCheck struct {
	Key        string `json:"key"`
	Ciphertext []byte `json:"ciphertext"`
	Plaintext  []byte `json:"plaintext"`
}

// restartKeyName is the name of the i-th key made in-process.
func restartKeyName(i int) string { return fmt.Sprintf("minio-key-%08d", i) }

// cachedRestartData returns the data directory of keys+tail keys from the
// cache directory (e.g. ~/.cache/keep-bench), building it there first if
// it is missing. A directory is cached per keys, tail and
// restartDataFormat; the benchmark copies it before each start.
func cachedRestartData(b *testing.B, cache string, keys, tail int) *restartData {
	b.Helper()
	name := fmt.Sprintf("restart-%s-keys%d-tail%d", restartDataFormat, keys, tail)
	final := filepath.Join(cache, name)
	if d, err := loadRestartData(final); err == nil {
		return d
	} else if !errors.Is(err, os.ErrNotExist) {
		b.Fatalf("cached data directory %s: %v (delete it to build it again)", final, err)
	}
	if err := os.MkdirAll(cache, 0o700); err != nil {
		b.Fatal(err)
	}
	tmp, err := os.MkdirTemp(cache, name+".tmp-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	d := buildRestartData(b, filepath.Join(tmp, "data"), keys, tail)
	if err := d.save(tmp); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		b.Fatal(err)
	}
	b.Logf("built the data directory of %d+%d keys in %v: %s", keys, tail, time.Since(start).Round(time.Second), final)
	d.Dir = filepath.Join(final, "data")
	return d
}

func loadRestartData(dir string) (*restartData, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "restart.json"))
	if err != nil {
		return nil, err
	}
	var d restartData
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	d.Dir = filepath.Join(dir, "data")
	return &d, nil
}

func (d *restartData) save(dir string) error {
	raw, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "restart.json"), raw, 0o600)
}

// buildRestartData builds in dir the data directory of a node that holds
// keys keys in its newest snapshot, written by the node itself, and tail
// keys in its raft log after it, as a node has after normal use:
//
//  1. a fresh node starts (it bootstraps its cluster, applies the init
//     entry) and stops;
//  2. its raft log is replayed into an in-process state.State, as the
//     node's FSM would, and keys keys are created in it through the same
//     sealed, authenticated entries add-key applies; the state is written
//     as a raft snapshot at the log's last index with hashicorp/raft's
//     file snapshot store, the node's own. Creating a million keys over
//     the API takes some 10 minutes on a 2-core machine; this takes one;
//  3. the node starts on it (it checks the snapshot's MAC and restores it,
//     as a restart does), is given one more key, and writes a snapshot of
//     its own (snapshot_threshold 1), which replaces the one of step 2;
//  4. it starts again with the default settings and is given tail keys
//     over the API (below raft's snapshot threshold, so they stay in the
//     log for the next start to replay), and data keys are generated for
//     the checks. Then it stops.
//
// A backup restored with `keep restore` would be the obvious route, but
// PUT /v1/db took at most 64 MiB when this was written.
func buildRestartData(tb testing.TB, dir string, keys, tail int) *restartData {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	d := &restartData{Dir: dir, Keys: keys, Tail: tail, HSMKey: testnode.NewHSMKey(tb)}
	n := testnode.New(tb, testnode.Options{Name: "build", Dir: dir, HSMKey: d.HSMKey, StartTimeout: 10 * time.Minute})
	d.Host = n.Host
	n.MustStart()
	by := n.Root.Identity().String()
	n.Stop()

	// 2. The state of the node's log, the keys beside it, as a snapshot.
	s, index, term, conf, confIndex := replayLog(tb, dir, d.HSMKey)
	createKeys(tb, s, keys, by)
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	// The peers' addresses in the snapshot's metadata are encoded by the
	// transport; raft's network transport, the node's, writes them as
	// they are, as the in-memory one does.
	_, trans := raft.NewInmemTransport("")
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, conf, confIndex, trans)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Snapshot(sink); err != nil {
		sink.Cancel()
		tb.Fatalf("write snapshot: %v", err)
	}
	if err := sink.Close(); err != nil {
		tb.Fatal(err)
	}
	ours := sink.ID()
	s = nil
	runtime.GC()

	// 3. The node's own snapshot replaces it.
	conf3 := filepath.Join(tb.TempDir(), "snapshot.yaml")
	if err := os.WriteFile(conf3, []byte("version: v1\ncluster:\n  snapshot_threshold: 1\n  snapshot_interval: 200ms\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	n.Config = conf3
	n.MustStart()
	c := n.RootClient(tb)
	noErr(tb, c.CreateKey(ctxT(tb), "", &kms.CreateKeyRequest{Name: "bench-snapshot"}), "CreateKey")
	waitOwnSnapshot(tb, dir, index, ours)
	n.Stop()

	// 4. The tail of the log, and the checks.
	n.Config = ""
	n.MustStart()
	c = n.RootClient(tb)
	createKeysAPI(tb, c, tail)
	for _, name := range []string{restartKeyName(keys / 2), "bench-snapshot"} {
		dek, err := c.GenerateKey(ctxT(tb), "", &kms.GenerateKeyRequest{Name: name, Length: 32})
		noErr(tb, err, "GenerateKey "+name)
		d.Checks = append(d.Checks, restartCheck{Key: name, Ciphertext: dek[0].Ciphertext, Plaintext: dek[0].Plaintext})
	}
	n.Stop()
	return d
}

// replayLog applies the raft log in dir (its wal/) to a new state, as the
// node's FSM does, and returns it with the index and term of the last
// entry and the latest cluster configuration and its index.
func replayLog(tb testing.TB, dir, hsmKey string) (s *state.State, index, term uint64, conf raft.Configuration, confIndex uint64) {
	tb.Helper()
	soft, err := hsm.ParseSoftKey(hsmKey)
	if err != nil {
		tb.Fatal(err)
	}
	s = state.New(hsm.NewKeyring(soft))
	meta := &metadb.BoltMetaDB{}
	defer meta.Close() // WAL.Close leaves it open
	log, err := wal.Open(filepath.Join(dir, "wal"), wal.WithMetaStore(meta))
	if err != nil {
		tb.Fatal(err)
	}
	defer log.Close()
	first, err := log.FirstIndex()
	if err != nil {
		tb.Fatal(err)
	}
	last, err := log.LastIndex()
	if err != nil {
		tb.Fatal(err)
	}
	if first != 1 {
		tb.Fatalf("the fresh node's log starts at %d, not 1", first)
	}
	for i := first; i <= last; i++ {
		var e raft.Log
		if err := log.GetLog(i, &e); err != nil {
			tb.Fatalf("log entry %d: %v", i, err)
		}
		switch e.Type {
		case raft.LogCommand:
			if err := s.Apply(e.Data); err != nil {
				tb.Fatalf("apply log entry %d: %v", i, err)
			}
		case raft.LogConfiguration:
			conf, confIndex = raft.DecodeConfiguration(e.Data), i
		}
		index, term = i, e.Term
	}
	if !s.Initialized() || confIndex == 0 {
		tb.Fatalf("the fresh node's log (%d entries) holds no init entry or no configuration", last)
	}
	return s, index, term, conf, confIndex
}

// createKeys creates keys keys of fresh material in s, by the identity by,
// as add-key does: the material sealed for its name, the entry
// authenticated. The entries are made on every core and applied in order.
func createKeys(tb testing.TB, s *state.State, keys int, by string) {
	tb.Helper()
	entries := make(chan []byte, 1024)
	errs := make(chan error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	var next sync.Mutex
	i := 0
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= keys {
					return
				}
				data, err := keyEntry(s, restartKeyName(j), by)
				if err != nil {
					errs <- err
					return
				}
				entries <- data
			}
		})
	}
	go func() { wg.Wait(); close(entries) }()
	// Applied in the order they come: key names need no order.
	applied := 0
	for data := range entries {
		if err := s.Apply(data); err != nil {
			tb.Fatalf("apply key entry: %v", err)
		}
		applied++
	}
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
	if applied != keys {
		tb.Fatalf("applied %d key entries, want %d", applied, keys)
	}
}

// keyEntry is the authenticated log entry that creates key name with fresh
// material, sealed for version 1 as the service seals it.
func keyEntry(s *state.State, name, by string) ([]byte, error) {
	material, err := crypto.GenerateKey(crypto.AES256, nil)
	if err != nil {
		return nil, err
	}
	sealed, err := s.SealKey(state.DefaultEnclave, name, 1, material)
	if err != nil {
		return nil, err
	}
	return s.EncodeEntry(&state.Entry{Op: state.OpCreateKey, Enclave: state.DefaultEnclave, Name: name, Time: time.Now().UTC(), By: by,
		Key: &state.KeyArgs{Type: crypto.AES256, Version: 1, Sealed: sealed}})
}

// waitOwnSnapshot waits until the node has written a snapshot of its own
// after index (raft has then reaped or kept ours as the older one).
func waitOwnSnapshot(tb testing.TB, dir string, index uint64, ours string) {
	tb.Helper()
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		list, err := snaps.List()
		if err != nil {
			tb.Fatal(err)
		}
		if len(list) > 0 && list[0].ID != ours && list[0].Index > index {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the node wrote no snapshot after index %d within 10 minutes", index)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// createKeysAPI creates n keys over the API, 16 requests at a time, as
// clients creating keys do.
func createKeysAPI(tb testing.TB, c *kms.Client, n int) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
		fail error
	)
	for range 16 {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				stop := fail != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "minio-tail-" + strconv.Itoa(i)}); err != nil {
					mu.Lock()
					fail = fmt.Errorf("CreateKey minio-tail-%d: %s", i, testnode.DescribeErr(err))
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if fail != nil {
		tb.Fatal(fail)
	}
}

// TestRestartData builds the data directory of BenchmarkRestart at a tiny
// size and checks that a node started on it holds every key, in the
// snapshot and in the log's tail, and decrypts the data keys made before.
func TestRestartData(t *testing.T) {
	const keys, tail = 300, 20
	d := buildRestartData(t, t.TempDir(), keys, tail)
	n := testnode.Start(t, testnode.Options{Name: "restarted", Dir: d.Dir, HSMKey: d.HSMKey, Host: d.Host})
	c := n.RootClient(t)
	checkRestart(t, c, d)
	total := 0
	for page := (&kms.ListRequest{Limit: 1000}); ; {
		p, err := c.ListKeys(ctxT(t), page)
		noErr(t, err, "ListKeys")
		total += len(p.Items)
		if p.ContinueAt == "" {
			break
		}
		page.ContinueAt = p.ContinueAt
	}
	if want := keys + tail + 1; total != want { // + bench-snapshot
		t.Errorf("the restarted node lists %d keys, want %d", total, want)
	}
	var snaps []string
	entries, err := os.ReadDir(filepath.Join(d.Dir, "snapshots"))
	noErr(t, err, "snapshots")
	for _, e := range entries {
		snaps = append(snaps, e.Name())
	}
	if len(snaps) == 0 {
		t.Errorf("no snapshot in %s", d.Dir)
	}
}

// checkRestart decrypts the data keys generated before the restart.
func checkRestart(tb testing.TB, c *kms.Client, d *restartData) {
	tb.Helper()
	for _, ck := range d.Checks {
		got, err := c.Decrypt(ctxT(tb), "", &kms.DecryptRequest{Name: ck.Key, Ciphertext: ck.Ciphertext})
		noErr(tb, err, "Decrypt "+ck.Key)
		if string(got[0].Plaintext) != string(ck.Plaintext) {
			tb.Fatalf("Decrypt %s: the plaintext differs from the one generated before the restart", ck.Key)
		}
	}
}
