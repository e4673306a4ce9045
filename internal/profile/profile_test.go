package profile

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestProfiler(t *testing.T) {
	var p Profiler
	if _, err := p.Stop(); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Stop before Start: %v", err)
	}
	if err := p.Start(Options{CPU: true, Heap: true, Goroutine: true, BlockRate: 1}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(Options{Heap: true}); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Start: %v", err)
	}
	if s, ok := p.Status(); !ok || !s.CPU || s.Started.IsZero() {
		t.Fatalf("status = %+v, %v", s, ok)
	}
	data, err := p.Stop()
	if err != nil {
		t.Fatal(err)
	}
	r := tar.NewReader(bytes.NewReader(data))
	var names []string
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	want := []string{"cpu.pprof", "heap.pprof", "goroutine.pprof", "block.pprof"}
	if len(names) != len(want) {
		t.Fatalf("archive holds %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("archive holds %v, want %v", names, want)
		}
	}
	if _, ok := p.Status(); ok {
		t.Fatal("still running after Stop")
	}
}
