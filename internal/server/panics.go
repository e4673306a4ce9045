package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
)

// answerPanics turns a panic in a handler into a logged error and a 500.
// net/http alone resets the stream (and logs to the server's ErrorLog,
// which is discarded): kms-go then resends the request to another node
// with the body the first attempt consumed, so a bug turned into a
// "malformed request" elsewhere and left no trace. The log line names the
// panic and the functions on the stack, never their arguments, which may
// hold secrets.
func answerPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v) // a handler that means to cut the stream
			}
			slog.Error("request handler panicked: answered 500", "path", r.URL.Path, "panic", panicText(v), "stack", callers())
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError) // a no-op if the reply had begun
			fmt.Fprint(w, `{"message":"internal server error"}`)
		}()
		next.ServeHTTP(w, r)
	})
}

// panicText describes a panic value by its type and, for runtime errors
// (nil dereference, index out of range), their text, which holds no data.
func panicText(v any) string {
	if err, ok := v.(runtime.Error); ok {
		return err.Error()
	}
	return fmt.Sprintf("%T", v)
}

// callers lists the functions and lines of the panicking goroutine's stack.
func callers() string {
	pc := make([]uintptr, 32)
	n := runtime.Callers(3, pc)
	frames := runtime.CallersFrames(pc[:n])
	var b strings.Builder
	for {
		f, more := frames.Next()
		fmt.Fprintf(&b, "%s:%d ", f.Function, f.Line)
		if !more {
			return b.String()
		}
	}
}
