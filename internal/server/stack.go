package server

// growStack makes the runtime grow the calling goroutine's stack once, to
// 16 KiB, while the call stack is still shallow.
//
// net/http serves each request on a fresh goroutine with a small stack.
// The request path (middleware, mux, body read through HTTP/2, decode,
// crypto, audit) is deeper than that, so the runtime grew the stack two or
// three times per request, each time unwinding and copying every frame
// above: 13% of the server's CPU on a generate request. Growing once at
// the entry, with a handful of frames to copy, costs a fraction of that.
// CockroachDB does the same (util/growstack).
//
// It returns a byte of its array, at an index the compiler cannot know, so
// that the array is not elided.
//
//go:noinline
func growStack() byte {
	var buf [8 << 10]byte
	return buf[stackIndex]
}

// stackIndex is 0; being a variable, it keeps growStack's array alive.
var stackIndex int
