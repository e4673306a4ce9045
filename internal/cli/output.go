package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// output writes a command's result to its stdout: v as JSON if asJSON is
// set, otherwise whatever text writes. v should be one of the JSON view
// types of this package so the JSON stays stable across kms-go versions.
func output(cmd *cobra.Command, asJSON bool, v any, text func(w io.Writer) error) error {
	w := cmd.OutOrStdout()
	if asJSON {
		return writeJSON(w, v)
	}
	return text(w)
}

// writeJSON writes v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// oneOrMany returns the only element of items, or items itself if there
// are zero or several: commands that take one or more names print a JSON
// object for one name and an array for several.
func oneOrMany[T any](items []T) any {
	if len(items) == 1 {
		return items[0]
	}
	return items
}

// table writes text in aligned columns.
type table struct{ tw *tabwriter.Writer }

// newTable returns a table writing to w. If header is not empty it is the
// first row.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

// row adds one row; empty cells are shown as "-".
func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// flush writes the table.
func (t *table) flush() error { return t.tw.Flush() }

// formatTime formats t for a table: local time to the second, or "" for
// the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// formatTimeAge formats t with its age, e.g. "2025-01-02 10:00:00 (3h ago)".
func formatTimeAge(t time.Time, now time.Time) string {
	s := formatTime(t)
	if s == "" {
		return ""
	}
	age := now.Sub(t)
	if age < 0 {
		return s
	}
	var a string
	switch {
	case age < time.Minute:
		a = fmt.Sprintf("%ds", int(age.Seconds()))
	case age < time.Hour:
		a = fmt.Sprintf("%dm", int(age.Minutes()))
	case age < 48*time.Hour:
		a = fmt.Sprintf("%dh", int(age.Hours()))
	default:
		a = fmt.Sprintf("%dd", int(age.Hours()/24))
	}
	return s + " (" + a + " ago)"
}

// jsonTime formats t for JSON output: RFC 3339 in UTC, or "" for the zero
// time so that omitempty drops it.
func jsonTime(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// sortByLength orders strings by length, then lexicographically, the order
// kms-go uses for policy patterns.
func sortByLength(a, b string) int {
	if n := len(a) - len(b); n != 0 {
		return n
	}
	return strings.Compare(a, b)
}

// field is one "label  value" line of a detail view.
type field struct{ label, value string }

// writeDetails writes each block as aligned label/value lines, with a
// blank line between blocks. Empty values are shown as "-".
func writeDetails(w io.Writer, blocks ...[]field) error {
	for i, block := range blocks {
		if i > 0 {
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
		}
		t := newTable(w)
		for _, f := range block {
			t.row(f.label, f.value)
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// colors reports whether output to w may use ANSI colours: w is a
// terminal and neither NO_COLOR nor TERM=dumb says otherwise.
func (a *app) colors(w io.Writer) bool {
	return isTerminal(w) && a.getenv("NO_COLOR") == "" && a.getenv("TERM") != "dumb"
}
