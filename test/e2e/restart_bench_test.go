package e2e

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

var (
	restartKeys   = flag.Int("restart.keys", 100_000, "BenchmarkRestart: keys in the node's snapshot")
	restartTail   = flag.Int("restart.tail", 8_000, "BenchmarkRestart: keys created after the snapshot, replayed from the log at each start (raft snapshots after 8,192 entries)")
	restartRounds = flag.Int("restart.rounds", 3, "BenchmarkRestart: starts of each binary, taking turns")
	restartOther  = flag.String("restart.other", "", "BenchmarkRestart: a second keep binary, started in turn with the one under test")
	restartCache  = flag.String("restart.cache", "", "BenchmarkRestart: where the built data directories are kept (default ~/.cache/keep-bench)")
	restartEnv    = flag.String("restart.env", "", "BenchmarkRestart: more environment of the node, space-separated KEY=VALUE (e.g. GODEBUG=gctrace=1)")
	restartSettle = flag.Duration("restart.settle", 15*time.Second, "BenchmarkRestart: how long the node idles after the calls before rss-settled-MB is read")
	restartPerf   = flag.String("restart.perf", "", "BenchmarkRestart: record each start with `perf record -g` into this directory, until ready")
)

// BenchmarkRestart measures what a user sees when a node of many keys
// restarts, on a real data directory (a snapshot the node wrote, and a log
// after it; see buildRestartData), with the default settings:
//
//   - ready-s: from exec until /v1/health/ready answers 200 and data keys
//     generated before the restart decrypt;
//   - ready-cpu-s: the CPU time of the node (utime+stime of
//     /proc/PID/stat) until /v1/health/ready answered 200;
//   - rss-MB, hwm-MB: VmRSS and VmHWM of the node once ready, after the
//     list and status calls (every -MB figure is in MiB: 1 GiB is 1024);
//   - rss-settled-MB: VmRSS after the node idled -restart.settle (15 s)
//     more, which the runtime spends returning the restore's garbage to
//     the OS; then heap-MB, the Go heap allocated
//     (go_memstats_heap_alloc_bytes of /v1/health/metrics, live and not
//     yet collected), and live-MB, the heap the last collection marked
//     live (the heap goal over 1+GOGC/100; that collection may have run
//     during the restore, with the snapshot's decoding still live);
//   - list-p99-ms: a list page of 100 keys from a random key on, 200
//     pages; status-p99-ms: GET /v1/health/status, 100 calls; both once
//     settled, and with the suffix -at-ready right after ready, while the
//     restore's garbage is collected.
//
// The figures are medians over -restart.rounds starts (default 3). With
// -restart.other=BINARY a second build starts in turn on the same data
// directory, so that before and after see the same machine; its figures
// are reported with the suffix -other, and their ratios other/this.
//
//	go test ./test/e2e -run '^$' -bench Restart -benchtime 1x                              # 100,000 keys
//	go test ./test/e2e -run '^$' -bench Restart -benchtime 1x -timeout 60m -restart.keys=1000000
//
// The data directory is built once per size and cached (-restart.cache,
// default ~/.cache/keep-bench; 1,000,000 keys take some 5 minutes and 1
// GB); every start runs on a fresh copy of it.
func BenchmarkRestart(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc/PID/status")
	}
	cache := *restartCache
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			b.Fatal(err)
		}
		cache = filepath.Join(home, ".cache", "keep-bench")
	}
	d := cachedRestartData(b, cache, *restartKeys, *restartTail)
	bins := []string{testnode.Binary(b)}
	if *restartOther != "" {
		bins = append(bins, *restartOther)
	}
	results := make([]map[string][]float64, len(bins))
	for i := range results {
		results[i] = map[string][]float64{}
	}
	for b.Loop() {
		for round := range *restartRounds {
			for j := range bins {
				i := j
				if round%2 == 1 { // ABBA: neither always starts first
					i = len(bins) - 1 - j
				}
				m := measureRestart(b, d, bins[i], fmt.Sprintf("%d-%d", i, round))
				line := []string{fmt.Sprintf("round %d, binary %d:", round, i)}
				for _, k := range slices.Sorted(maps.Keys(m)) {
					results[i][k] = append(results[i][k], m[k])
					line = append(line, fmt.Sprintf("%s %.3f", k, m[k]))
				}
				// To stderr: a benchmark's log keeps its first ten lines.
				fmt.Fprintln(os.Stderr, strings.Join(line, " "))
			}
		}
	}
	for k, v := range results[0] {
		b.ReportMetric(median(v), k)
		if len(bins) > 1 {
			other := median(results[1][k])
			b.ReportMetric(other, k+"-other")
			b.ReportMetric(other/median(v), k+"-other/this")
		}
	}
}

// measureRestart starts bin on a fresh copy of d's data directory and
// returns what BenchmarkRestart reports.
func measureRestart(b *testing.B, d *restartData, bin, label string) map[string]float64 {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "data")
	if out, err := exec.Command("cp", "-a", d.Dir, dir).CombinedOutput(); err != nil {
		b.Fatalf("copy %s: %v\n%s", d.Dir, err, out)
	}
	defer os.RemoveAll(dir)
	n := testnode.New(b, testnode.Options{Name: "restart-" + label, Binary: bin, Dir: dir, HSMKey: d.HSMKey, Host: d.Host,
		StartTimeout: 10 * time.Minute, ExtraEnv: strings.Fields(*restartEnv)})
	probe := testnode.HTTPClient(b, nil, time.Second)

	start := time.Now()
	started := make(chan error, 1)
	go func() { started <- n.Start() }()
	var pid int
	for pid == 0 {
		select {
		case err := <-started:
			b.Fatalf("%s: %v", label, err)
		default:
		}
		pid = n.PID()
		time.Sleep(time.Millisecond)
	}
	stopPerf := startPerf(b, pid, label)
	var ready time.Duration
	for {
		resp, err := probe.Get(n.Endpoint() + "/v1/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ready = time.Since(start)
				break
			}
		}
		if pid := n.PID(); pid == 0 {
			b.Fatalf("%s: the node exited before it was ready: %v", label, <-started)
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("%s: not ready after 10 minutes", label)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cpu, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	stopPerf()
	if err := <-started; err != nil {
		b.Fatalf("%s: %v", label, err)
	}
	c := n.RootClient(b)
	checkRestart(b, c, d)
	decrypted := time.Since(start)

	m := map[string]float64{
		"ready-s":     decrypted.Seconds(),
		"ready-cpu-s": float64(cpu) / clockTick(),
		"probe-s":     ready.Seconds(),
	}
	admin := testnode.HTTPClient(b, n.Root, 10*time.Second)
	latencies := func(suffix string) {
		m["list-p99-ms"+suffix] = p99(b, 200, func(r *rand.Rand) error {
			_, err := c.ListKeys(ctxT(b), &kms.ListRequest{ContinueAt: restartKeyName(r.IntN(d.Keys)), Limit: 100})
			return err
		})
		m["status-p99-ms"+suffix] = p99(b, 100, func(*rand.Rand) error {
			resp, err := admin.Get(n.Endpoint() + "/v1/health/status")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET /v1/health/status: %s", resp.Status)
			}
			return nil
		})
	}
	latencies("-at-ready")
	status := procStatus(b, pid)
	m["rss-MB"], m["hwm-MB"] = status["VmRSS"]/1024, status["VmHWM"]/1024
	// The runtime returns what the restore left behind to the OS
	// gradually, down to about its heap goal.
	time.Sleep(*restartSettle)
	m["rss-settled-MB"] = procStatus(b, pid)["VmRSS"] / 1024
	latencies("")
	metrics := scrapeMetrics(b, admin, n.Endpoint())
	m["heap-MB"] = metrics["go_memstats_heap_alloc_bytes"] / (1 << 20)
	// The heap goal is the heap the last collection marked live times
	// 1+GOGC/100 (internal/gctune sets GOGC).
	m["live-MB"] = metrics["go_memstats_next_gc_bytes"] / (1 + metrics["go_gc_gogc_percent"]/100) / (1 << 20)
	n.Stop()
	return m
}

// p99 calls f calls times in a row and returns the 99th percentile of its
// latency in milliseconds.
func p99(b *testing.B, calls int, f func(*rand.Rand) error) float64 {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	took := make([]float64, 0, calls)
	for range calls {
		start := time.Now()
		if err := f(r); err != nil {
			b.Fatal(testnode.DescribeErr(err))
		}
		took = append(took, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(took)
	return took[len(took)*99/100]
}

// procStatus returns the kB fields of /proc/PID/status (VmRSS, VmHWM, …).
func procStatus(b *testing.B, pid int) map[string]float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	m := map[string]float64{}
	for line := range strings.Lines(string(raw)) {
		k, v, ok := strings.Cut(line, ":")
		if v, isKB := strings.CutSuffix(strings.TrimSpace(v), " kB"); ok && isKB {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				m[k] = f
			}
		}
	}
	return m
}

// scrapeMetrics returns the unlabelled metrics of the node; the test fails
// if one BenchmarkRestart reports is missing.
func scrapeMetrics(b *testing.B, c *http.Client, endpoint string) map[string]float64 {
	b.Helper()
	resp, err := c.Get(endpoint + "/v1/health/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			m[name] = f
		}
	}
	for _, name := range []string{"go_memstats_heap_alloc_bytes", "go_memstats_next_gc_bytes", "go_gc_gogc_percent"} {
		if _, ok := m[name]; !ok {
			b.Fatalf("the node's metrics have no %s", name)
		}
	}
	return m
}

// startPerf records the process with perf until the function it returns
// is called, if -restart.perf names a directory.
func startPerf(b *testing.B, pid int, label string) (stop func()) {
	b.Helper()
	if *restartPerf == "" {
		return func() {}
	}
	if err := os.MkdirAll(*restartPerf, 0o755); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(*restartPerf, "restart-"+label+".data")
	cmd := exec.Command("perf", "record", "-F", "499", "-g", "-o", out, "-p", strconv.Itoa(pid))
	if err := cmd.Start(); err != nil {
		b.Fatalf("perf: %v", err)
	}
	return func() {
		cmd.Process.Signal(syscall.SIGINT)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-ctx.Done():
			cmd.Process.Kill()
		}
		b.Logf("perf profile of start %s: %s", label, out)
	}
}
