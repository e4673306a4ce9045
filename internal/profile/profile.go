// Package profile runs the Go profilers of a node on request: started and
// stopped remotely through /v1/debug/pprof, the results returned as a TAR
// of pprof files.
package profile

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"runtime/pprof"
	"sync"
	"time"
)

// Errors of the profiler.
var (
	ErrRunning    = errors.New("profiling is already running: stop it first")
	ErrNotRunning = errors.New("profiling is not running")
)

// Options select what to profile.
type Options struct {
	CPU           bool
	Heap          bool
	Goroutine     bool // "runtime" threads
	Thread        bool // OS threads
	BlockRate     int  // sample one blocking event per BlockRate ns; 0 = off
	MutexFraction int  // report 1/MutexFraction mutex events; 0 = off
}

// Status is what is being profiled, since when.
type Status struct {
	Options
	Started time.Time
}

// Profiler runs at most one profiling session at a time.
type Profiler struct {
	mu      sync.Mutex
	running bool
	status  Status
	cpu     bytes.Buffer
}

// Start starts a profiling session.
func (p *Profiler) Start(opts Options) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return ErrRunning
	}
	if opts.CPU {
		p.cpu.Reset()
		if err := pprof.StartCPUProfile(&p.cpu); err != nil {
			return fmt.Errorf("failed to start CPU profile: %w", err)
		}
	}
	if opts.BlockRate > 0 {
		runtime.SetBlockProfileRate(opts.BlockRate)
	}
	if opts.MutexFraction > 0 {
		runtime.SetMutexProfileFraction(opts.MutexFraction)
	}
	p.running, p.status = true, Status{Options: opts, Started: time.Now().UTC()}
	return nil
}

// Status reports the running session; ok is false when none runs.
func (p *Profiler) Status() (s Status, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status, p.running
}

// Stop ends the session and returns its profiles as a TAR archive with one
// pprof file per profile.
func (p *Profiler) Stop() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return nil, ErrNotRunning
	}
	p.running = false
	opts := p.status.Options

	files := map[string][]byte{}
	if opts.CPU {
		pprof.StopCPUProfile()
		files["cpu.pprof"] = bytes.Clone(p.cpu.Bytes())
	}
	named := []struct {
		on   bool
		name string
	}{
		{opts.Heap, "heap"},
		{opts.Goroutine, "goroutine"},
		{opts.Thread, "threadcreate"},
		{opts.BlockRate > 0, "block"},
		{opts.MutexFraction > 0, "mutex"},
	}
	for _, n := range named {
		if !n.on {
			continue
		}
		var buf bytes.Buffer
		if err := pprof.Lookup(n.name).WriteTo(&buf, 0); err != nil {
			return nil, fmt.Errorf("failed to write %s profile: %w", n.name, err)
		}
		files[n.name+".pprof"] = buf.Bytes()
	}
	if opts.BlockRate > 0 {
		runtime.SetBlockProfileRate(0)
	}
	if opts.MutexFraction > 0 {
		runtime.SetMutexProfileFraction(0)
	}
	return archive(files)
}

func archive(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	w := tar.NewWriter(&buf)
	now := time.Now()
	for _, name := range []string{"cpu.pprof", "heap.pprof", "goroutine.pprof", "threadcreate.pprof", "block.pprof", "mutex.pprof"} {
		data, ok := files[name]
		if !ok {
			continue
		}
		if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := w.Write(data); err != nil {
			return nil, err
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
