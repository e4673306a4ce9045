package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/metrics"
)

func TestAPIOf(t *testing.T) {
	for path, want := range map[string]string{
		"/version":              metrics.APIMinKMS,
		"/v1/kms/minio":         metrics.APIMinKMS,
		"/v1/health/metrics":    metrics.APIMinKMS,
		"/v1/debug/log":         metrics.APIMinKMS,
		"/v1/rpc/membership":    metrics.APIRPC,
		"/v1/key/generate/k":    metrics.APIKES,
		"/v1/identity/self/xyz": metrics.APIKES,
		"/v1/status":            metrics.APIKES,
		"/v1/metrics":           metrics.APIKES,
	} {
		if got := apiOf(path); got != want {
			t.Errorf("apiOf(%q) = %s, want %s", path, got, want)
		}
	}
}

// TestObserve checks what the middleware counts: status, sizes, and the
// request in flight while the handler runs.
func TestObserve(t *testing.T) {
	m := metrics.New()
	var inFlight string
	h := observe(m, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		inFlight = scrapeLine(t, m, `keep_http_requests_in_flight{api="minkms"}`)
		w.WriteHeader(http.StatusTeapot)
		w.Write(append(body, body...))
	}))
	req := httptest.NewRequest(http.MethodPost, "/v1/kms/minio", strings.NewReader("12345"))
	req.ContentLength = -1 // as a chunked body
	h.ServeHTTP(httptest.NewRecorder(), req)

	if inFlight != "1" {
		t.Errorf("in flight while served: %q, want 1", inFlight)
	}
	for line, want := range map[string]string{
		`keep_http_requests_total{api="minkms",code="418"}`: "1",
		`keep_http_requests_in_flight{api="minkms"}`:        "0",
		`keep_http_request_size_bytes_sum{api="minkms"}`:    "5",
		`keep_http_response_size_bytes_sum{api="minkms"}`:   "10",
	} {
		if got := scrapeLine(t, m, line); got != want {
			t.Errorf("%s = %q, want %s", line, got, want)
		}
	}
}

// scrapeLine returns the value of the sample named line (with its labels)
// in the text exposition of m.
func scrapeLine(t *testing.T, m *metrics.Metrics, line string) string {
	t.Helper()
	body, _, err := m.Encode(http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, line+" "); ok {
			return v
		}
	}
	return ""
}

// BenchmarkObserve is the cost the middleware adds to a request.
func BenchmarkObserve(b *testing.B) {
	h := observe(metrics.New(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("reply"))
	}))
	req := httptest.NewRequest(http.MethodPost, "/v1/kms/minio", strings.NewReader("12345"))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
}
