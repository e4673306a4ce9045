package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLoggerWritesJSONAndPublishes(t *testing.T) {
	var out bytes.Buffer
	log, hub := New(&out, slog.LevelInfo)
	_, c, cancel := hub.Subscribe(4, time.Time{})
	defer cancel()

	log.With("node", "n0").Info("key created", "name", "k")
	log.Debug("not enabled")

	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", out.String())
	}
	if line["msg"] != "key created" || line["node"] != "n0" || line["name"] != "k" {
		t.Fatalf("line = %v", line)
	}
	r := <-c
	if r.Message != "key created" || r.Attrs["node"] != "n0" || r.Attrs["name"] != "k" || r.Level != slog.LevelInfo {
		t.Fatalf("record = %+v", r)
	}
	if !strings.Contains(r.Text, `msg="key created"`) || strings.Contains(r.Text, "\n") {
		t.Fatalf("text = %q", r.Text)
	}
	select {
	case r := <-c:
		t.Fatalf("disabled record published: %+v", r)
	default:
	}
}

func TestHistory(t *testing.T) {
	log, hub := New(new(bytes.Buffer), slog.LevelInfo)
	start := time.Now()
	log.Info("one")
	log.Info("two")
	past, _, cancel := hub.Subscribe(1, start)
	defer cancel()
	if len(past) != 2 || past[0].Message != "one" {
		t.Fatalf("history = %+v", past)
	}
	past, _, cancel2 := hub.Subscribe(1, time.Time{})
	defer cancel2()
	if len(past) != 0 {
		t.Fatalf("no since, yet history = %+v", past)
	}
}
