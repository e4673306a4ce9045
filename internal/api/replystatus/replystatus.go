// Package replystatus remembers the HTTP status a handler answered with,
// for the audit records and metrics that the API layers write after it.
package replystatus

import "net/http"

// Writer is an http.ResponseWriter that remembers the status of its reply;
// 200 until the handler says otherwise.
type Writer struct {
	http.ResponseWriter
	Status int
}

// New wraps w.
func New(w http.ResponseWriter) *Writer {
	return &Writer{ResponseWriter: w, Status: http.StatusOK}
}

// WriteHeader remembers status and passes it on.
func (w *Writer) WriteHeader(status int) {
	w.Status = status
	w.ResponseWriter.WriteHeader(status)
}

// Unwrap lets http.ResponseController reach the wrapped writer's Flush.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
