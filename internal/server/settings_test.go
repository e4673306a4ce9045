package server

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/state"
)

// TestSettingsAudit checks that a node audits every change of the
// cluster-wide settings it applies once it is live, before the change
// takes effect: turning the audit log off leaves its record in the sink.
func TestSettingsAudit(t *testing.T) {
	var sink bytes.Buffer
	r := newRuntimeSettings(nil, audit.New(&sink, false), "10.0.0.1:7373", "h1:own")
	const by = "h1:ZG1r5J2fAEj5T2d0nso1FW7tT3p74Y5PxKlL_UTjALA"
	cluster := map[string]string{}
	change := func(k, v string) {
		if v == "" {
			delete(cluster, k)
		} else {
			cluster[k] = v
		}
		settings := map[string]string{}
		for k, v := range cluster {
			settings[k] = v
		}
		r.apply(state.SettingsUpdate{Settings: settings, Changes: map[string]string{k: v}, By: by})
	}
	steps := []struct {
		name    string
		caught  bool // the node has caught up
		k, v    string
		records []string // the resources of the records the sink gets
	}{
		{"replayed while catching up", false, "log.level", "debug", nil},
		{"audit off while catching up", false, "audit", "off", nil},
		{"audit on", true, "audit", "on", []string{`audit="on"`}},
		{"log level", true, "log.level", "warn", []string{`log.level="warn"`}},
		{"admin", true, "admin.identity", by, []string{`admin.identity="` + by + `"`}},
		{"audit off", true, "audit", "off", []string{`audit="off"`}},
		{"while audit is off", true, "log.level", "info", nil},
		{"audit reset to the node's on", true, "audit", "", []string{`audit=""`}},
	}
	for _, st := range steps {
		if st.caught {
			r.caughtUp()
		}
		sink.Reset()
		change(st.k, st.v)
		lines := strings.Split(strings.TrimSpace(sink.String()), "\n")
		if sink.Len() == 0 {
			lines = nil
		}
		if len(lines) != len(st.records) {
			t.Fatalf("%s: %d records, want %d:\n%s", st.name, len(lines), len(st.records), sink.String())
		}
		for i, line := range lines {
			var e audit.Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%s: %v: %s", st.name, err, line)
			}
			if e.Command != settingsCommand || e.Resource != st.records[i] || e.Identity != by || e.Node != "10.0.0.1:7373" || e.Status != 200 {
				t.Errorf("%s: record %+v, want %s %s by %s", st.name, e, settingsCommand, st.records[i], by)
			}
		}
		if got := r.Effective()[st.k]; st.v != "" && got != st.v {
			t.Errorf("%s: effective %s = %q, want %q", st.name, st.k, got, st.v)
		}
	}
	if got := r.Effective()["admin.identity"]; got != by {
		t.Errorf("effective admin.identity %q, want %s", got, by)
	}
	change("admin.identity", "")
	if got := r.Effective()["admin.identity"]; got != "h1:own" {
		t.Errorf("effective admin.identity after the reset %q, want the node's own", got)
	}
}
