// Package logging sets up Keep's server log (log/slog: text on a terminal,
// JSON otherwise) and hands every record to live subscribers as well: the
// `keep logs` stream (/v1/debug/log) and the KES /v1/log/error stream.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// historySize is how many recent records a subscriber can ask for.
const historySize = 1000

// Record is a log record as subscribers see it.
type Record struct {
	Time    time.Time
	Level   slog.Level
	Message string
	Attrs   map[string]string // the record's attributes, flattened, as text
	Text    string            // the record as one line of text
}

// Hub fans log records out to subscribers and keeps a short history.
type Hub struct {
	mu      sync.Mutex
	subs    map[chan<- Record]struct{}
	history []Record
}

// New returns a slog logger writing to w at level (text if w is a
// terminal, JSON otherwise), and the hub that sees every record it logs.
func New(w io.Writer, level slog.Leveler) (*slog.Logger, *Hub) {
	opts := &slog.HandlerOptions{Level: level}
	var inner slog.Handler = slog.NewJSONHandler(w, opts)
	if isTerminal(w) {
		inner = slog.NewTextHandler(w, opts)
	}
	hub := &Hub{subs: map[chan<- Record]struct{}{}}
	return slog.New(&handler{inner: inner, hub: hub}), hub
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Subscribe returns the records since the given time (from the history),
// a channel of the records logged from now on, and a function that ends
// the subscription. A subscriber too slow to take a record misses it.
func (h *Hub) Subscribe(buffer int, since time.Time) ([]Record, <-chan Record, func()) {
	c := make(chan Record, buffer)
	h.mu.Lock()
	var past []Record
	if !since.IsZero() {
		i, _ := slices.BinarySearchFunc(h.history, since, func(r Record, t time.Time) int { return r.Time.Compare(t) })
		past = slices.Clone(h.history[i:])
	}
	h.subs[c] = struct{}{}
	h.mu.Unlock()
	var once sync.Once
	return past, c, func() {
		once.Do(func() {
			h.mu.Lock()
			delete(h.subs, c)
			h.mu.Unlock()
		})
	}
}

func (h *Hub) publish(r Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.history) == historySize {
		h.history = slices.Delete(h.history, 0, historySize/10)
	}
	h.history = append(h.history, r)
	for c := range h.subs {
		select {
		case c <- r:
		default:
		}
	}
}

// handler writes records with inner and publishes them on hub.
type handler struct {
	inner slog.Handler
	hub   *Hub
	attrs []slog.Attr // from WithAttrs, for subscribers
	group string
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.inner.Handle(ctx, r)
	rec := Record{Time: r.Time, Level: r.Level, Message: r.Message, Attrs: map[string]string{}}
	add := func(a slog.Attr) bool {
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		rec.Attrs[key] = a.Value.Resolve().String()
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	rec.Text = text(rec)
	h.hub.publish(rec)
	return err
}

// text renders a record as one line in slog's text format.
func text(r Record) string {
	var b []byte
	w := writerFunc(func(p []byte) (int, error) { b = append(b, p...); return len(p), nil })
	l := slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug - 100})
	rec := slog.NewRecord(r.Time, r.Level, r.Message, 0)
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range r.Attrs {
			if !yield(k) {
				return
			}
		}
	}) {
		rec.AddAttrs(slog.String(k, r.Attrs[k]))
	}
	l.Handle(context.Background(), rec)
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	return string(b)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.inner = h.inner.WithAttrs(attrs)
	c.attrs = append(slices.Clone(h.attrs), attrs...)
	return &c
}

func (h *handler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	return &c
}
