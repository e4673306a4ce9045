package minkms

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestUnavailable: a starting node is alive, and answers everything else
// with 503 "node is not ready".
func TestUnavailable(t *testing.T) {
	srv := httptest.NewServer(Unavailable())
	defer srv.Close()
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, "/v1/kms/", http.StatusServiceUnavailable},
		{http.MethodPost, "/v1/kms/default", http.StatusServiceUnavailable},
		{http.MethodGet, "/v1/health/live", http.StatusOK},
		{http.MethodGet, "/v1/health/ready", http.StatusServiceUnavailable},
		{http.MethodGet, "/v1/key/list/", http.StatusServiceUnavailable},
	} {
		req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Errorf("%s %s: %v, want %d", tt.method, tt.path, err, tt.status)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
		}
	}
}
