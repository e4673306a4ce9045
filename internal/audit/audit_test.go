package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"
)

type failingWriter struct{ fail bool }

func (w *failingWriter) Write(b []byte) (int, error) {
	if w.fail {
		return 0, errors.New("disk full")
	}
	return len(b), nil
}

func TestRecordWritesOneLine(t *testing.T) {
	var sink bytes.Buffer
	l := New(&sink, false)
	e := Event{Time: time.Unix(0, 0).UTC(), Node: "n:7373", API: "minkms", Command: "KEY:GENERATE", Resource: "k", Status: 200, Latency: time.Millisecond}
	if err := l.Record(e); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(sink.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("want one line, got %q", sink.String())
	}
	var got Event
	if err := json.Unmarshal(sink.Bytes(), &got); err != nil || got != e {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestFailClosedAndOpen(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		w := &failingWriter{fail: true}
		l := New(w, failOpen)
		err := l.Record(Event{Command: "KEY:CREATE"})
		if failOpen != (err == nil) {
			t.Fatalf("failOpen=%v: Record = %v", failOpen, err)
		}
		if failOpen != (l.Ready() == nil) {
			t.Fatalf("failOpen=%v: Ready = %v", failOpen, l.Ready())
		}
		if err != nil && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("error %v is not ErrUnavailable", err)
		}
		w.fail = false // the sink recovers: the next write succeeds and clears the state
		if err := l.Record(Event{}); err != nil || l.Ready() != nil {
			t.Fatalf("after recovery: %v, %v", err, l.Ready())
		}
	}
}

func TestSubscribe(t *testing.T) {
	l := New(nil, false)
	c, cancel := l.Subscribe(1)
	l.Record(Event{Command: "A"})
	l.Record(Event{Command: "B"}) // the buffer is full: dropped for this subscriber
	if e := <-c; e.Command != "A" {
		t.Fatalf("got %q", e.Command)
	}
	cancel()
	l.Record(Event{Command: "C"})
	select {
	case e := <-c:
		t.Fatalf("event %q after cancel", e.Command)
	default:
	}
}

func TestFileSinkRecovers(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/audit.log"
	if err := os.WriteFile(path, nil, 0o400); err != nil { // read-only
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// root writes read-only files anyway: make the path a directory instead.
		os.Remove(path)
		os.Mkdir(path, 0o700)
	}
	l := NewFile(path, false)
	defer l.Close()
	if err := l.Ready(); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unwritable file: Ready = %v", err)
	}
	if err := l.Record(Event{Command: "KEY:CREATE"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unwritable file: Record = %v", err)
	}
	os.Remove(path)
	if err := l.Record(Event{Command: "KEY:CREATE"}); err != nil {
		t.Fatalf("after the file became writable: %v", err)
	}
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte("KEY:CREATE")) {
		t.Fatalf("file holds %q", data)
	}
}

// TestFailing checks what keep_audit_sink_failing reports: a sink whose
// last write failed, in both modes, until a write succeeds, and never
// while the audit log is switched off.
func TestFailing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failOpen bool
		disabled bool
		fail     bool
		want     bool
	}{
		{"writes", false, false, false, false},
		{"fails closed", false, false, true, true},
		{"fails open", true, false, true, true},
		{"switched off", false, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &failingWriter{fail: tc.fail}
			l := New(w, tc.failOpen)
			if l.Failing() {
				t.Fatal("failing before any write")
			}
			_ = l.Record(Event{Command: "KEY:CREATE"})
			l.SetEnabled(!tc.disabled)
			if got := l.Failing(); got != tc.want {
				t.Fatalf("Failing = %v, want %v", got, tc.want)
			}
			w.fail = false
			if err := l.Record(Event{}); err != nil || l.Failing() {
				t.Fatalf("after a good write: Record = %v, Failing = %v", err, l.Failing())
			}
		})
	}
	if (*Log)(nil).Failing() {
		t.Error("a nil log is failing")
	}
	if l := NewFile(t.TempDir()+"/missing/audit.log", false); !l.Failing() {
		t.Error("a file that cannot be opened is not failing")
	}
}
