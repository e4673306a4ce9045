// Command promcheck validates Prometheus rule files as Prometheus loads
// them (rulefmt: YAML shape, PromQL of every expression, templates of
// labels and annotations) and prints their rules as JSON, each with the
// metric names its expression selects, for test/promrules.
//
// With -eval SERIES (a JSON file: an evaluation time and series with
// their samples) it evaluates every alert's expression at that time with
// Prometheus's query engine over those series, and prints, for each alert,
// the label sets of the elements its expression returns (what would be
// pending or firing, before `for`).
//
// Usage: promcheck [-eval SERIES] FILE…
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// rule is one rule of a file, as test/promrules.Rule decodes it.
type rule struct {
	File        string            `json:"file"`
	Group       string            `json:"group"`
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         time.Duration     `json:"for"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Metrics     []string          `json:"metrics"`
}

func main() {
	eval := flag.String("eval", "", "evaluate the alerts over the series in this JSON file")
	flag.Parse()
	var rules []rule
	failed := false
	for _, file := range flag.Args() {
		groups, errs := rulefmt.ParseFile(file, false)
		for _, err := range errs {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			failed = true
		}
		if len(errs) > 0 {
			continue
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				expr, err := parser.ParseExpr(r.Expr)
				if err != nil {
					fmt.Fprintf(os.Stderr, "%s: group %s, rule %s%s: %v\n", file, g.Name, r.Alert, r.Record, err)
					failed = true
					continue
				}
				rules = append(rules, rule{
					File: file, Group: g.Name, Alert: r.Alert, Record: r.Record,
					Expr: r.Expr, For: time.Duration(r.For),
					Labels: r.Labels, Annotations: r.Annotations,
					Metrics: selected(expr),
				})
			}
		}
	}
	if failed {
		os.Exit(1)
	}
	var out any = rules
	if *eval != "" {
		fired, err := evaluate(*eval, rules)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		out = fired
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// selected returns the metric names of the series expr selects, also
// those named by a __name__ matcher alone.
func selected(expr parser.Expr) []string {
	names := []string{}
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if v, ok := n.(*parser.VectorSelector); ok {
			name := v.Name
			for _, m := range v.LabelMatchers {
				if m.Name == "__name__" && name == "" {
					name = m.Value
				}
			}
			names = append(names, name)
		}
		return nil
	})
	return names
}

// seriesFile is what -eval reads: the time to evaluate at, and every
// series with its samples.
type seriesFile struct {
	Time   int64 `json:"time"` // Unix milliseconds
	Series []struct {
		Labels  map[string]string `json:"labels"`  // __name__ included
		Samples [][2]float64      `json:"samples"` // Unix milliseconds, value; in time order
	} `json:"series"`
}

// evaluate evaluates the expression of every alert of rules over the
// series of the file at path, and returns the label sets each returned.
func evaluate(path string, rules []rule) (map[string][]map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f seriesFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var all []storage.Series
	for _, s := range f.Series {
		var samples []chunks.Sample
		for _, p := range s.Samples {
			samples = append(samples, floatSample{t: int64(p[0]), f: p[1]})
		}
		all = append(all, storage.NewListSeries(labels.FromMap(s.Labels), samples))
	}
	slices.SortFunc(all, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	db := &storage.MockQueryable{MockQuerier: &storage.MockQuerier{
		SelectMockFunction: func(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
			var sel []storage.Series
			for _, s := range all {
				if matchAll(s.Labels(), ms) {
					sel = append(sel, s)
				}
			}
			return &listSet{series: sel}
		},
	}}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 10_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	fired := map[string][]map[string]string{}
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		q, err := engine.NewInstantQuery(context.Background(), db, nil, r.Expr, time.UnixMilli(f.Time))
		if err != nil {
			return nil, fmt.Errorf("alert %s: %w", r.Alert, err)
		}
		res := q.Exec(context.Background())
		if res.Err != nil {
			return nil, fmt.Errorf("alert %s: %w", r.Alert, res.Err)
		}
		vec, err := res.Vector()
		if err != nil {
			return nil, fmt.Errorf("alert %s: %w", r.Alert, err)
		}
		if _, ok := fired[r.Alert]; !ok {
			fired[r.Alert] = []map[string]string{}
		}
		for _, s := range vec {
			fired[r.Alert] = append(fired[r.Alert], s.Metric.Map())
		}
		q.Close()
	}
	return fired, nil
}

func matchAll(l labels.Labels, ms []*labels.Matcher) bool {
	for _, m := range ms {
		if !m.Matches(l.Get(m.Name)) {
			return false
		}
	}
	return true
}

// listSet is a storage.SeriesSet of a slice of series.
type listSet struct {
	series []storage.Series
	i      int
}

func (s *listSet) Next() bool {
	s.i++
	return s.i <= len(s.series)
}
func (s *listSet) At() storage.Series                { return s.series[s.i-1] }
func (s *listSet) Err() error                        { return nil }
func (s *listSet) Warnings() annotations.Annotations { return nil }

// floatSample is a chunks.Sample of a float.
type floatSample struct {
	t int64
	f float64
}

func (s floatSample) T() int64                      { return s.t }
func (s floatSample) F() float64                    { return s.f }
func (s floatSample) H() *histogram.Histogram       { return nil }
func (s floatSample) FH() *histogram.FloatHistogram { return nil }
func (s floatSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s floatSample) Copy() chunks.Sample           { return s }
