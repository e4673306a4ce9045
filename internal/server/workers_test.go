package server

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestWorkersServe(t *testing.T) {
	p := newWorkers()
	h := p.handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	}))
	var wg sync.WaitGroup
	for range 32 { // more at once than there are idle workers: new ones start
		wg.Go(func() {
			for range 20 {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/a/b", nil))
				if rec.Code != http.StatusTeapot || rec.Header().Get("X-Path") != "/a/b" {
					t.Errorf("got %d %q", rec.Code, rec.Header().Get("X-Path"))
				}
			}
		})
	}
	wg.Wait()
}

// TestWorkersPanic checks that a handler's panic reaches the request's own
// goroutine, where net/http recovers it, and that the worker survives it.
func TestWorkersPanic(t *testing.T) {
	p := newWorkers()
	boom := errors.New("boom")
	h := p.handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			panic(boom)
		}
	}))
	for range 3 {
		func() {
			defer func() {
				if v := recover(); v != boom {
					t.Errorf("recovered %v, want %v", v, boom)
				}
			}()
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/panic", nil))
		}()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusOK {
			t.Errorf("after a panic: %d", rec.Code)
		}
	}
}

// TestWorkersExitWhenIdle checks that the workers of a burst exit once
// idle.
func TestWorkersExitWhenIdle(t *testing.T) {
	p := newWorkers()
	p.idle = 10 * time.Millisecond
	before := runtime.NumGoroutine()
	release := make(chan struct{})
	h := p.handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil)) })
	}
	time.Sleep(10 * time.Millisecond)
	close(release)
	wg.Wait()
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines 10s after the burst, %d before it", runtime.NumGoroutine(), before)
		}
	}
}
