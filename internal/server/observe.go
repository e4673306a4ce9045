package server

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/keep-kms/keep/internal/metrics"
)

// observe wraps the node's handler: every request is counted and timed
// in the metrics, by API, and logged at debug level. It is the only place
// that instruments HTTP; handlers know nothing of it.
func observe(m *metrics.Metrics, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = growStack()
		api := apiOf(r.URL.Path)
		rm := m.Requests(api)
		rm.Start()
		start := time.Now()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		reqSize := r.ContentLength
		var body *countingBody
		if reqSize < 0 {
			body = &countingBody{ReadCloser: r.Body}
			r.Body = body
		}
		defer func() {
			d := time.Since(start)
			if body != nil {
				reqSize = body.n
			}
			rm.Done(rec.status, d, reqSize, rec.size)
			if slog.Default().Enabled(r.Context(), slog.LevelDebug) {
				ip, _, _ := net.SplitHostPort(r.RemoteAddr)
				slog.LogAttrs(r.Context(), slog.LevelDebug, "request",
					slog.String("api", api), slog.String("method", r.Method), slog.String("path", r.URL.Path),
					slog.String("ip", ip), slog.Int("status", rec.status), slog.Duration("duration", d))
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// kesPrefixes are the paths of the KES API; every path that is neither
// KES nor /v1/rpc/ is the MinIO KMS API's (/version is counted there).
var kesPrefixes = []string{"/v1/key/", "/v1/policy/", "/v1/identity/", "/v1/log/", "/v1/status", "/v1/ready", "/v1/metrics", "/v1/api"}

// apiOf names the API a request path belongs to, for the metrics.
func apiOf(path string) string {
	if strings.HasPrefix(path, "/v1/rpc/") {
		return metrics.APIRPC
	}
	for _, p := range kesPrefixes {
		if strings.HasPrefix(path, p) {
			return metrics.APIKES
		}
	}
	return metrics.APIMinKMS
}

// recorder remembers the status and counts the body of a reply.
type recorder struct {
	http.ResponseWriter
	status      int
	size        int64
	wroteHeader bool
}

func (w *recorder) WriteHeader(status int) {
	if !w.wroteHeader && status >= 200 {
		w.status, w.wroteHeader = status, true
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recorder) Write(b []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(b)
	w.size += int64(n)
	return n, err
}

// Flush sends what was written so far, for handlers that stream and
// assert http.Flusher.
func (w *recorder) Flush() {
	w.wroteHeader = true
	http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the writer's Flush and
// deadlines.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the bytes read from a request body of unknown
// length.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}
