package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// BenchmarkAuditCPU measures what audit logging costs: the server CPU time
// per generate of a node that writes every command to an audit file,
// against a node with no audit sink, measured in the same run.
//
// Run it with
//
//	go test ./test/e2e -run '^$' -bench AuditCPU -benchtime 1x
//
// Both nodes run on data directories with a soft HSM key. The measurement
// is BenchmarkServerCPU's: utime+stime from /proc/PID/stat around a fixed
// number of calls (sized so that the node without audit is busy for
// KEEP_BENCH_SECONDS per case and round), made in KEEP_BENCH_CHUNKS chunks
// with the two nodes taking turns, KEEP_BENCH_ROUNDS rounds, and
// KEEP_BENCH_WORKERS client goroutines; the reported ratio is the median
// of the rounds' ratios. Goal (from the issue): at most 1.10.
func BenchmarkAuditCPU(b *testing.B) {
	seconds, rounds, workers, chunks := benchSettings(b)
	tick := clockTick()
	const goal = 1.10

	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)

	auditFile := filepath.Join(b.TempDir(), "audit.log")
	audited := testnode.Start(b, testnode.Options{Config: writeConfigFile(b, "version: v1\naudit:\n  sink: "+auditFile+"\n")})
	plain := testnode.Start(b, testnode.Options{})
	var cases []*benchCase
	for _, cs := range benchCases() {
		if cs.gen != nil {
			cases = append(cases, cs)
		}
	}
	var servers []benchServer
	for _, s := range []struct {
		name string
		n    *testnode.Node
	}{{"audit", audited}, {"no audit", plain}} {
		c := s.n.RootClient(b)
		for _, cs := range cases {
			noErr(b, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: cs.enclave}), "CreateEnclave "+cs.enclave)
			noErr(b, c.CreateKey(ctx, cs.enclave, &kms.CreateKeyRequest{Name: benchKey, Type: kms.AES256}), "CreateKey in "+cs.enclave)
		}
		servers = append(servers, benchServer{name: s.name, client: c, pid: s.n.PID()})
	}

	// Warm up and size the runs from the rate of the node without audit.
	ops := make([]int, len(cases))
	for i, cs := range cases {
		for _, s := range servers {
			if _, err := runLoad(ctx, s.client, cs, workers, 300); err != nil {
				b.Fatalf("warm-up %s on %s: %s", cs.name, s.name, testnode.DescribeErr(err))
			}
		}
		const probe = 1000
		elapsed, err := runLoad(ctx, servers[1].client, cs, workers, probe)
		if err != nil {
			b.Fatalf("warm-up %s: %s", cs.name, testnode.DescribeErr(err))
		}
		per := max(int(probe/elapsed.Seconds()*seconds), 2000) / chunks
		ops[i] = per * chunks
	}
	linesBefore := countLines(b, auditFile)

	b.ResetTimer()
	// cpu[case][server] holds µs of server CPU per generate, one per round.
	cpu := make([][][]float64, len(cases))
	for i := range cases {
		cpu[i] = make([][]float64, len(servers))
	}
	calls := 0
	for r := range rounds {
		for i, cs := range cases {
			ticks, err := measureInterleaved(ctx, servers, cs, workers, ops[i], chunks, r+i)
			if err != nil {
				b.Fatal(err)
			}
			calls += ops[i] * cs.batch
			line := fmt.Sprintf("bench: round %d %-16s %6d calls", r+1, cs.name, ops[i])
			for k, s := range servers {
				us := float64(ticks[k]) / tick / float64(ops[i]*cs.batch) * 1e6
				cpu[i][k] = append(cpu[i][k], us)
				line += fmt.Sprintf(" | %s %6.1f µs/generate", s.name, us)
			}
			fmt.Fprintln(os.Stderr, line)
		}
	}
	b.StopTimer()

	// Every generate the audited node served is one line of its audit
	// file: the benchmark measured what it claims to.
	if got := countLines(b, auditFile) - linesBefore; got != calls {
		b.Errorf("the audit file gained %d lines for %d generates", got, calls)
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "server CPU per generate, audit to a file vs no audit sink; median of %d rounds; %d client goroutines; CLK_TCK %.0f\n", rounds, workers, tick)
	fmt.Fprintf(&tbl, "%-16s %8s %14s %16s %7s %6s %6s  %s\n", "case", "calls", "audit µs/gen", "no audit µs/gen", "ratio", "goal", "", "ratio per round")
	for i, cs := range cases {
		var ratios []float64
		var text []string
		for r := range rounds {
			ratios = append(ratios, cpu[i][0][r]/cpu[i][1][r])
			text = append(text, fmt.Sprintf("%.3f", cpu[i][0][r]/cpu[i][1][r]))
		}
		ratio := median(ratios)
		verdict := "met"
		if ratio > goal {
			verdict = "MISSED"
		}
		fmt.Fprintf(&tbl, "%-16s %8d %14.1f %16.1f %7.3f %6.2f %6s  %s\n", cs.name, ops[i],
			median(cpu[i][0]), median(cpu[i][1]), ratio, goal, verdict, strings.Join(text, " "))
		b.ReportMetric(ratio, cs.short+"-audit/no-audit")
		b.ReportMetric(median(cpu[i][0]), cs.short+"-audit-us/gen")
		b.ReportMetric(median(cpu[i][1]), cs.short+"-no-audit-us/gen")
	}
	b.Log("\n" + tbl.String())
}

// measureInterleaved makes ops calls of cs on each server in chunks, the
// servers taking turns (who goes first rotates with turn), and returns the
// CPU ticks each server spent on its calls.
func measureInterleaved(ctx context.Context, servers []benchServer, cs *benchCase, workers, ops, chunks, turn int) ([]int64, error) {
	ticks := make([]int64, len(servers))
	for c := range chunks {
		for k := range servers {
			k := (k + c + turn) % len(servers)
			s := servers[k]
			before, err := procCPU(s.pid)
			if err != nil {
				return nil, err
			}
			if _, err := runLoad(ctx, s.client, cs, workers, ops/chunks); err != nil {
				return nil, fmt.Errorf("%s on %s: %s", cs.name, s.name, testnode.DescribeErr(err))
			}
			after, err := procCPU(s.pid)
			if err != nil {
				return nil, err
			}
			ticks[k] += after - before
		}
	}
	return ticks, nil
}

// countLines counts the lines of a file.
func countLines(b *testing.B, path string) int {
	b.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}
