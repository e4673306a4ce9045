// Package promrules reads Prometheus rule files for tests, with
// Prometheus's own parsers, and resolves the series names an expression
// selects to the metric families of a scrape; it also scrapes a node and
// reads the samples.
//
// The parsers run in a helper program, testdata/promcheck, a module of its
// own that pins github.com/prometheus/prometheus: Keep's go.mod, and with
// it the keep binary, stay free of Prometheus and of the newer versions of
// raft's dependencies it requires. The helper is built once per test
// process with the go command that runs the tests (a first build fetches
// its modules through the module proxy and takes about a minute; later
// builds come from the build cache).
package promrules

import (
	"bytes"
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
	buildOnce.Do(func() { helper, buildErr = build() })
	if buildErr != nil {
		t.Fatalf("promrules: %v", buildErr)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helper, paths...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("promrules: Prometheus refuses %s: %v\n%s", strings.Join(paths, ", "), err, stderr.String())
	}
	var rules []Rule
	if err := json.Unmarshal(stdout.Bytes(), &rules); err != nil {
		t.Fatalf("promrules: reading the helper's output: %v", err)
	}
	return rules
}

// build compiles testdata/promcheck into a temporary directory and
// returns the program's path.
func build() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot find the source of package promrules")
	}
	dir, err := os.MkdirTemp("", "promcheck-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "promcheck")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = filepath.Join(filepath.Dir(file), "testdata", "promcheck")
	// The helper's go.mod and go.sum pin every module it builds with:
	// nothing of the tests' own module settings applies to it.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v\n%s", cmd.Dir, err, out)
	}
	return bin, nil
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
