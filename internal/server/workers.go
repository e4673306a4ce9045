package server

import (
	"net/http"
	"sync"
	"time"
)

// workers run request handlers on long-lived goroutines, whose stacks have
// grown to what a request needs already.
//
// net/http serves each request on a fresh goroutine with a small stack.
// The request path (middleware, mux, body read through HTTP/2, decode,
// crypto, audit) is deeper than that, so the runtime grew the stack two or
// three times per request, each time unwinding and copying every frame:
// 13% of the server's CPU on a generate request. Growing the stack once at
// the entry (as CockroachDB's util/growstack does) still cost 5%. A worker
// keeps its stack from one request to the next; handing a request over
// costs two goroutine switches instead.
type workers struct {
	jobs chan *job // unbuffered: a send succeeds only if a worker is idle
	idle time.Duration
}

// job is one request handed to a worker.
type job struct {
	h    http.Handler
	w    http.ResponseWriter
	r    *http.Request
	done chan any // receives nil, or the handler's panic value
}

var jobs = sync.Pool{New: func() any { return &job{done: make(chan any, 1)} }}

// workerIdle is how long a worker waits for a request before it exits, so
// that a burst of requests does not leave its goroutines behind.
const workerIdle = 10 * time.Second

func newWorkers() *workers {
	return &workers{jobs: make(chan *job), idle: workerIdle}
}

// handler returns h served on the workers.
func (p *workers) handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j := jobs.Get().(*job)
		j.h, j.w, j.r = h, w, r
		select {
		case p.jobs <- j:
		default:
			go p.work(j)
		}
		v := <-j.done
		j.h, j.w, j.r = nil, nil, nil
		jobs.Put(j)
		if v != nil {
			// On the request's own goroutine, where net/http recovers
			// it (and http.ErrAbortHandler means what it should).
			panic(v)
		}
	})
}

// work runs j and then the jobs that come while it is busy, until none
// comes for p.idle.
func (p *workers) work(j *job) {
	timer := time.NewTimer(p.idle)
	defer timer.Stop()
	for {
		j.done <- run(j)
		timer.Reset(p.idle)
		select {
		case j = <-p.jobs:
		case <-timer.C:
			return
		}
	}
}

// run serves j's request and returns the handler's panic value, if any.
func run(j *job) (panicked any) {
	defer func() { panicked = recover() }()
	j.h.ServeHTTP(j.w, j.r)
	return nil
}
