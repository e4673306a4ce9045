package minkms

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestUnavailable: a starting or stopping node resets /v1/kms requests, so
// that kms-go tries its next server, and answers everything else.
func TestUnavailable(t *testing.T) {
	srv := httptest.NewServer(Unavailable())
	defer srv.Close()
	for _, tt := range []struct {
		method, path string
		status       int // 0: the request fails in transport
	}{
		{http.MethodPost, "/v1/kms/", 0},
		{http.MethodPost, "/v1/kms/default", 0},
		{http.MethodGet, "/v1/health/live", http.StatusOK},
		{http.MethodGet, "/v1/health/ready", http.StatusServiceUnavailable},
		{http.MethodGet, "/v1/key/list/", http.StatusServiceUnavailable},
	} {
		req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		switch {
		case tt.status == 0 && err == nil:
			resp.Body.Close()
			t.Errorf("%s %s: %d, want the request reset", tt.method, tt.path, resp.StatusCode)
		case tt.status != 0 && err != nil:
			t.Errorf("%s %s: %v, want %d", tt.method, tt.path, err, tt.status)
		case tt.status != 0:
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.status)
			}
		}
	}
}
