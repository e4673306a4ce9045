// Package promrules reads Prometheus rule files for tests, with
// Prometheus's own parsers, evaluates their alerts over given series with
// Prometheus's query engine, and resolves the series names an expression
// selects to the metric families of a scrape; it also scrapes a node and
// reads the samples.
//
// The parsers and the engine run in a helper program, testdata/promcheck, a module of its
// own that pins github.com/prometheus/prometheus: Keep's go.mod, and with
// it the keep binary, stay free of Prometheus and of the newer versions of
// raft's dependencies it requires. The helper is built with the go command
// that runs the tests and kept in os.UserCacheDir()/keep-test (the first
// build fetches its modules through the module proxy and takes about a
// minute).
package promrules

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Rule is one rule of a rule file, as Prometheus loads it.
type Rule struct {
	File        string            `json:"file"`
	Group       string            `json:"group"`
	Alert       string            `json:"alert,omitempty"`  // the alert's name; empty for a recording rule
	Record      string            `json:"record,omitempty"` // the recorded series; empty for an alert
	Expr        string            `json:"expr"`
	For         time.Duration     `json:"for"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Metrics are the names of the series the expression selects, as
	// PromQL's parser finds them, once per selector.
	Metrics []string `json:"metrics"`
}

var (
	buildOnce sync.Once
	helper    string
	buildErr  error
)

// Load parses the rule files at paths as Prometheus does when it loads
// them, and returns their rules. A file that Prometheus would refuse
// (YAML, PromQL, templates, duplicate or missing fields) fails the test
// with Prometheus's own messages.
func Load(t testing.TB, paths ...string) []Rule {
	t.Helper()
	var rules []Rule
	if err := json.Unmarshal(run(t, paths...), &rules); err != nil {
		t.Fatalf("promrules: reading the helper's output: %v", err)
	}
	return rules
}

// Series is a time series for Eval: its labels, __name__ included, and
// its samples in time order.
type Series struct {
	Labels  map[string]string `json:"labels"`
	Samples []Sample          `json:"samples"`
}

// Sample is one sample of a Series: Unix milliseconds and the value.
type Sample [2]float64

// Eval evaluates the expression of every alert of the rule files at
// paths at time at, with Prometheus's query engine over series, and
// returns for each alert the label sets of the elements it returned: the
// alerts that would be pending (their `for` is not evaluated). Every
// alert has an entry, empty if it would not fire.
func Eval(t testing.TB, at time.Time, series []Series, paths ...string) map[string][]map[string]string {
	t.Helper()
	data, err := json.Marshal(struct {
		Time   int64    `json:"time"`
		Series []Series `json:"series"`
	}{at.UnixMilli(), series})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "series.json")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	var fired map[string][]map[string]string
	if err := json.Unmarshal(run(t, append([]string{"-eval", file}, paths...)...), &fired); err != nil {
		t.Fatalf("promrules: reading the helper's output: %v", err)
	}
	return fired
}

// run runs the helper with args and returns what it printed; it fails
// the test with the helper's messages if the helper fails.
func run(t testing.TB, args ...string) []byte {
	t.Helper()
	buildOnce.Do(func() { helper, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("promrules: %v", buildErr)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helper, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("promrules: Prometheus refuses %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// build returns the helper program, compiled from testdata/promcheck on
// first use into os.UserCacheDir()/keep-test (as test/minio caches its
// MinIO), named by a hash of its sources and of the Go version, so that
// test processes share one build and a change of the sources builds anew.
func build() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot find the source of package promrules")
	}
	src := filepath.Join(filepath.Dir(file), "testdata", "promcheck")
	h := sha256.New()
	for _, name := range []string{"main.go", "go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d\n", name, len(data))
		h.Write(data)
	}
	fmt.Fprintln(h, runtime.Version())
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "keep-test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, fmt.Sprintf("promcheck-%x", h.Sum(nil)[:6]))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// Built beside its name and renamed, so that a process running the
	// tests at the same time never runs a half-written binary.
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, ".")
	cmd.Dir = src
	// The helper's go.mod and go.sum pin every module it builds with:
	// nothing of the tests' own module settings applies to it.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building %s: %v\n%s", src, err, out)
	}
	return bin, os.Rename(tmp, bin)
}

// suffixes are the series a family of each type exposes beside its own
// name: a histogram its buckets, sum and count, a summary its sum and
// count.
var suffixes = map[dto.MetricType][]string{
	dto.MetricType_HISTOGRAM: {"_bucket", "_sum", "_count"},
	dto.MetricType_SUMMARY:   {"_sum", "_count"},
}

// Family returns the name of the family in families (a parsed scrape) to
// which the series name belongs: name itself, or the histogram or summary
// whose _bucket, _sum or _count series it is. A name that no family
// exposes is an error, a suffix the family's type does not have (the
// _count of a gauge, a counter without its _total) too.
func Family(families map[string]*dto.MetricFamily, name string) (string, error) {
	if f, ok := families[name]; ok {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			return "", fmt.Errorf("%s is a histogram: select its _bucket, _sum or _count series", name)
		}
		return name, nil
	}
	for _, end := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, end)
		f := families[base]
		if !ok || f == nil {
			continue
		}
		if !slices.Contains(suffixes[f.GetType()], end) {
			return "", fmt.Errorf("%s is a %s, which has no %s series", base, strings.ToLower(f.GetType().String()), end)
		}
		return base, nil
	}
	return "", fmt.Errorf("%s is no exported metric", name)
}

// Scrape reads the metrics at url (a node's /v1/health/metrics) with hc
// and parses them, failing the test unless that works.
func Scrape(t testing.TB, hc *http.Client, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %d %v %s", url, resp.StatusCode, err, body)
	}
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse the metrics of %s: %v", url, err)
	}
	return families
}

// Value returns the value of the sample of family name in families whose
// labels include labels (a histogram's sample count), and whether there
// is one.
func Value(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}
