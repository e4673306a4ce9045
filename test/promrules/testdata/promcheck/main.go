// Command promcheck validates Prometheus rule files as Prometheus loads
// them (rulefmt: YAML shape, PromQL of every expression, templates of
// labels and annotations) and prints their rules as JSON, each with the
// metric names its expression selects, for test/promrules.
//
// Usage: promcheck FILE…
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
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
	var rules []rule
	failed := false
	for _, file := range os.Args[1:] {
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
	if err := json.NewEncoder(os.Stdout).Encode(rules); err != nil {
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
