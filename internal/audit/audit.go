// Package audit records what happened to every request that reached the
// service layer: who asked for what, on which resource, and how it ended.
// Records go to a sink (a file or stdout, one JSON line each) and to live
// subscribers (`keep logs --audit`, the KES /v1/log/audit stream).
//
// Records never hold secrets: no key material, plaintexts, ciphertexts or
// associated data, only names and outcomes. A change of the cluster-wide
// settings names the settings and their values, but never the value of a
// secret one (service.DescribeSettings).
package audit

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is returned when the audit sink cannot be written; Keep
// then refuses requests unless configured to fail open.
var ErrUnavailable = errors.New("audit log is unavailable")

// Event is one audit record.
type Event struct {
	Time     time.Time     `json:"time"`
	Node     string        `json:"node"`               // host:port of the node that served the request
	Identity string        `json:"identity,omitempty"` // h1:… of the caller
	IP       string        `json:"ip,omitempty"`
	API      string        `json:"api"`     // "minkms" or "kes"; "cluster" for a change applied from the replicated log
	Command  string        `json:"command"` // KEY:GENERATE, …; the route for requests that are not commands
	Enclave  string        `json:"enclave,omitempty"`
	Resource string        `json:"resource,omitempty"` // the key, policy, identity or node acted on; the settings changed, as name="value"
	Status   int           `json:"status"`             // the HTTP status of the outcome
	Error    string        `json:"error,omitempty"`    // the error message for a failed request
	Latency  time.Duration `json:"latency_ns"`
}

// Log delivers audit events. It is safe for concurrent use.
type Log struct {
	failOpen bool
	disabled atomic.Bool   // no events are written to the sink
	observe  func([]Event) // sees every event; set before use

	mu     sync.Mutex
	sink   io.Writer // nil: no sink
	broken error     // the last sink failure, until a write succeeds
	buf    []byte
	subs   map[chan<- Event]struct{}
}

// New returns a Log that writes to sink (nil for none). With failOpen, a
// sink that cannot be written does not make Record fail.
func New(sink io.Writer, failOpen bool) *Log {
	return &Log{sink: sink, failOpen: failOpen, subs: map[chan<- Event]struct{}{}}
}

// Ready returns ErrUnavailable while the sink is known to be broken and
// the log fails closed, so that requests are refused before they run.
func (l *Log) Ready() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken != nil && !l.failOpen && !l.disabled.Load() {
		return fmt.Errorf("%w: %v", ErrUnavailable, l.broken)
	}
	return nil
}

// Failing reports whether the last write to the sink failed and none has
// succeeded since, while writing to it is enabled: records are then refused
// with the requests (fail closed) or lost (fail open). The metrics report
// it, since a log that fails open says nothing to the clients.
func (l *Log) Failing() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken != nil && !l.disabled.Load()
}

// Observe makes f see every batch of events recorded from now on, whether
// or not they reach a sink: the metrics count commands with it. Call it
// before the log is used. f is called outside the log's lock, must be
// fast, and must not keep the slice.
func (l *Log) Observe(f func([]Event)) { l.observe = f }

// SetEnabled turns writing events to the sink on or off; subscribers get
// events either way.
func (l *Log) SetEnabled(on bool) { l.disabled.Store(!on) }

// Record writes events to the sink, in one write, and hands them to the
// subscribers. It fails with ErrUnavailable if the sink cannot be written
// and the log fails closed. A subscriber too slow to take an event misses
// it; the sink never does.
func (l *Log) Record(events ...Event) error {
	if l == nil || len(events) == 0 {
		return nil
	}
	if l.observe != nil {
		l.observe(events)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.subs {
		for _, e := range events {
			select {
			case c <- e:
			default:
			}
		}
	}
	if l.sink == nil || l.disabled.Load() {
		return nil
	}
	l.buf = appendJSONs(l.buf[:0], events)
	_, err := l.sink.Write(l.buf)
	l.broken = err
	if err != nil && !l.failOpen {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Subscribe returns a channel of the events recorded from now on, and a
// function that ends the subscription.
func (l *Log) Subscribe(buffer int) (<-chan Event, func()) {
	c := make(chan Event, buffer)
	l.mu.Lock()
	l.subs[c] = struct{}{}
	l.mu.Unlock()
	var once sync.Once
	return c, func() {
		once.Do(func() {
			l.mu.Lock()
			delete(l.subs, c)
			l.mu.Unlock()
		})
	}
}
