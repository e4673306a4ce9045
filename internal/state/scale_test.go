package state_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/gctune"
	"github.com/keep-kms/keep/internal/state"
)

var scaleLong = flag.Bool("scale.long", false, "BenchmarkScale runs at a million keys too")

// BenchmarkScale builds an enclave of n keys of one version each, applied
// as `keep add-key` and MinIO create them (and 10,000 enclaves of 3 keys
// each), and reports what it costs:
//
//   - heap-B/key: the heap in use per key after a GC;
//   - apply-us/key: the time to apply one create entry, which bounds how
//     long a node replays its log at restart;
//   - capture-ms, persist-ms: the time a snapshot blocks Apply (raft's
//     FSM.Snapshot) and the time it takes beside it (FSMSnapshot.Persist),
//     snapshot-cpu-ms the CPU time of both;
//   - snapshot-MB, restore-s: a snapshot's size and its restore, a restart
//     from a snapshot;
//   - built-rss-MB: the most memory the process held resident until the
//     keys were applied, as a node that applies them (run one size at a
//     time for it to be that size's); peak-rss-MB until the end, with a
//     snapshot in a buffer and a restore beside the state it replaces;
//   - due-ms: the leader's look for rotations and destructions that are
//     due, every second (State.Due);
//   - page-p99-us (and ns/op, the mean): a list page of 100 keys from a
//     random key on.
//
// On a busy machine the wall-clock times swing with the load: the *-cpu-*
// figures are the CPU time of the process (all its threads, the garbage
// collector's too) over the same spans, and compare better between runs.
//
// It runs at 100,000 keys and 10,000 enclaves, and with -scale.long at
// 1,000,000 keys too:
//
//	go test -run - -bench Scale -benchtime 2000x ./internal/state -scale.long
func BenchmarkScale(b *testing.B) {
	type size struct{ keys, enclaves int }
	sizes := []size{{100_000, 1}, {30_000, 10_000}}
	if *scaleLong {
		sizes = append(sizes, size{1_000_000, 1})
	}
	for _, sz := range sizes {
		name := fmt.Sprintf("keys=%d", sz.keys)
		if sz.enclaves > 1 {
			name += fmt.Sprintf("/enclaves=%d", sz.enclaves)
		}
		b.Run(name, func(b *testing.B) { benchmarkScale(b, sz.keys, sz.enclaves) })
	}
}

func scaleKeyName(i int) string { return fmt.Sprintf("minio-key-%08d", i) }

// scaleEnclave is the enclave of key i of a state of n enclaves: the
// default one, or the others in turn.
func scaleEnclave(i, enclaves int) string {
	if enclaves == 1 {
		return state.DefaultEnclave
	}
	return fmt.Sprintf("tenant-%05d", i%enclaves)
}

// cpuTime is the CPU time the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// peakRSS is the most memory the process has held resident, in MB: with
// the state, the snapshot and its restore (Linux only; 0 elsewhere).
func peakRSS(b *testing.B) float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(status)) {
		if kb, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")))
			if err != nil {
				b.Fatalf("VmHWM: %v", err)
			}
			return float64(n) / 1024
		}
	}
	return 0
}

// scaleState returns a state that holds n keys of one version each in
// its enclaves, and the wall-clock and CPU time its key entries took to
// apply.
func scaleState(b *testing.B, n, enclaves int) (s *state.State, wall, cpu time.Duration) {
	s = newState(b)
	for i := range enclaves {
		if enc := scaleEnclave(i, enclaves); enc != state.DefaultEnclave {
			if err := apply(s, &state.Entry{Op: state.OpCreateEnclave, Name: enc}); err != nil {
				b.Fatal(err)
			}
		}
	}
	// One material for all: what a key costs in the state does not depend
	// on it, and sealing it again for each name is what add-key does.
	material, err := crypto.GenerateKey(crypto.AES256, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := range n {
		name, enc := scaleKeyName(i), scaleEnclave(i, enclaves)
		sealed, err := s.SealKey(enc, name, 1, material)
		if err != nil {
			b.Fatal(err)
		}
		data, err := s.EncodeEntry(&state.Entry{Op: state.OpCreateKey, Enclave: enc, Name: name, Time: time.Now().UTC(), By: alice, Key: &state.KeyArgs{Type: crypto.AES256, Version: 1, Sealed: sealed}})
		if err != nil {
			b.Fatal(err)
		}
		start, startCPU := time.Now(), cpuTime(b)
		if err := s.Apply(data); err != nil {
			b.Fatal(err)
		}
		wall += time.Since(start)
		cpu += cpuTime(b) - startCPU
	}
	return s, wall, cpu
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func benchmarkScale(b *testing.B, n, enclaves int) {
	// The garbage collector's target as a node sets it, unless GOGC says
	// otherwise: the resident figures are a node's with its defaults.
	if os.Getenv("GOGC") == "" {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go gctune.Run(ctx, gctune.Default, 100*time.Millisecond)
	}
	// Reported after b.Loop, which resets what was reported before it.
	metrics := map[string]float64{}
	before := heapInUse()
	s, applying, applyingCPU := scaleState(b, n, enclaves)
	metrics["built-rss-MB"] = peakRSS(b)
	metrics["heap-B/key"] = float64(heapInUse()-before) / float64(n)
	metrics["apply-us/key"] = float64(applying.Microseconds()) / float64(n)
	metrics["apply-cpu-us/key"] = float64(applyingCPU.Microseconds()) / float64(n)

	start := time.Now()
	s.Due(start)
	metrics["due-ms"] = float64(time.Since(start).Microseconds()) / 1000

	var snap bytes.Buffer
	startCPU := cpuTime(b)
	capture, persist := captureAndPersist(b, s, &snap)
	metrics["snapshot-cpu-ms"] = float64((cpuTime(b) - startCPU).Microseconds()) / 1000
	metrics["capture-ms"] = float64(capture.Microseconds()) / 1000
	metrics["persist-ms"] = float64(persist.Microseconds()) / 1000
	metrics["snapshot-MB"] = float64(snap.Len()) / 1e6
	start, startCPU = time.Now(), cpuTime(b)
	if err := s.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		b.Fatal(err)
	}
	metrics["restore-s"] = time.Since(start).Seconds()
	metrics["restore-cpu-s"] = (cpuTime(b) - startCPU).Seconds()
	snap = bytes.Buffer{}
	runtime.GC()

	r := rand.New(rand.NewPCG(1, 2))
	var took []time.Duration
	for b.Loop() {
		i := r.IntN(n)
		start := time.Now()
		list, _, err := s.Keys(scaleEnclave(i, enclaves), "minio-", scaleKeyName(i), 100)
		took = append(took, time.Since(start))
		if err != nil || len(list) == 0 {
			b.Fatal(len(list), err)
		}
	}
	slices.Sort(took)
	metrics["page-p99-us"] = float64(took[len(took)*99/100].Microseconds())
	metrics["peak-rss-MB"] = peakRSS(b)
	for unit, v := range metrics {
		b.ReportMetric(v, unit)
	}
}

// BenchmarkKey is the state's part of the hot path: the lookup of a key's
// latest version, which every generate and decrypt makes, in an enclave of
// 100,000 keys.
func BenchmarkKey(b *testing.B) {
	const n = 100_000
	s, _, _ := scaleState(b, n, 1)
	r := rand.New(rand.NewPCG(1, 2))
	names := make([]string, 1024)
	for i := range names {
		names[i] = scaleKeyName(r.IntN(n))
	}
	runtime.GC()
	i := 0
	var startCPU time.Duration
	for b.Loop() {
		if i == 0 {
			startCPU = cpuTime(b)
		}
		if _, err := s.Key(state.DefaultEnclave, names[i%len(names)], 0); err != nil {
			b.Fatal(err)
		}
		i++
	}
	// The CPU time per lookup, which a busy machine changes less than the
	// wall-clock time.
	b.ReportMetric(float64((cpuTime(b)-startCPU).Nanoseconds())/float64(i), "cpu-ns/op")
}

// BenchmarkRestore is a restart from a snapshot of 100,000 keys: its
// restore, in wall-clock and CPU time.
func BenchmarkRestore(b *testing.B) {
	s, _, _ := scaleState(b, 100_000, 1)
	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	var cpu time.Duration
	for b.Loop() {
		start := cpuTime(b)
		if err := s.Restore(bytes.NewReader(snap.Bytes())); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime(b) - start
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkApply is the apply of an entry that creates a key, in an
// enclave of 100,000 keys: what a write costs each node, and a restart
// without a snapshot per entry.
func BenchmarkApply(b *testing.B) {
	s, _, _ := scaleState(b, 100_000, 1)
	material, err := crypto.GenerateKey(crypto.AES256, nil)
	if err != nil {
		b.Fatal(err)
	}
	entries := make([][]byte, b.N)
	for i := range entries {
		name := fmt.Sprintf("new-key-%08d", i)
		sealed, err := s.SealKey(state.DefaultEnclave, name, 1, material)
		if err != nil {
			b.Fatal(err)
		}
		if entries[i], err = s.EncodeEntry(&state.Entry{Op: state.OpCreateKey, Enclave: state.DefaultEnclave, Name: name, Time: time.Now().UTC(), By: alice, Key: &state.KeyArgs{Type: crypto.AES256, Version: 1, Sealed: sealed}}); err != nil {
			b.Fatal(err)
		}
	}
	runtime.GC()
	b.ResetTimer()
	start := cpuTime(b)
	for _, data := range entries {
		if err := s.Apply(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime(b)-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
