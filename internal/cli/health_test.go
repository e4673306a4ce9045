package cli

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestHealth(t *testing.T) {
	var (
		mu       sync.Mutex
		requests []string // path?query of each request
		certs    int      // client certificates offered
		status   = map[string]int{}
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		requests = append(requests, r.URL.RequestURI())
		certs += len(r.TLS.PeerCertificates)
		code, ok := status[r.URL.RequestURI()]
		if !ok {
			code = http.StatusNotFound
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		if code != http.StatusOK {
			w.Write([]byte(`{"message":"not ready"}`))
			return
		}
		w.Write([]byte(`{}`))
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")

	tests := []struct {
		name     string
		args     []string
		status   map[string]int
		wantPath string // "" = no request
		wantCode int
		wantOut  string // in stdout, or stderr on failure
	}{
		{name: "live", args: []string{"-k", host}, status: map[string]int{"/v1/health/live": 200},
			wantPath: "/v1/health/live", wantCode: ExitOK, wantOut: host + ": live"},
		{name: "live from MINIO_KMS_SERVER", args: []string{"-k"}, status: map[string]int{"/v1/health/live": 200},
			wantPath: "/v1/health/live", wantCode: ExitOK, wantOut: host + ": live"},
		{name: "ready", args: []string{"-k", "--ready", host}, status: map[string]int{"/v1/health/ready": 200},
			wantPath: "/v1/health/ready", wantCode: ExitOK, wantOut: host + ": ready"},
		{name: "not ready", args: []string{"-k", "--ready", host}, status: map[string]int{"/v1/health/ready": 503},
			wantPath: "/v1/health/ready", wantCode: ExitError, wantOut: "not ready"},
		{name: "ready for writes", args: []string{"-k", "--ready", "--write", host}, status: map[string]int{"/v1/health/ready?write": 200},
			wantPath: "/v1/health/ready?write", wantCode: ExitOK, wantOut: "ready for writes"},
		{name: "untrusted certificate", args: []string{host}, status: map[string]int{"/v1/health/live": 200},
			wantCode: ExitError, wantOut: "not trusted"},
		{name: "write without ready", args: []string{"-k", "--write", host}, wantCode: ExitUsage, wantOut: "--write is a flag of --ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			requests, certs, status = nil, 0, tt.status
			mu.Unlock()
			stdout, stderr, code := runCLI(t, map[string]string{EnvServer: srv.URL}, "", append([]string{"health"}, tt.args...)...)
			if code != tt.wantCode || !strings.Contains(stdout+stderr, tt.wantOut) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, stdout, stderr, tt.wantCode, tt.wantOut)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case tt.wantPath == "" && len(requests) > 0:
				t.Fatalf("requests %q, want none", requests)
			case tt.wantPath != "" && (len(requests) != 1 || requests[0] != tt.wantPath):
				t.Fatalf("requests %q, want one to %s", requests, tt.wantPath)
			case certs != 0:
				t.Fatal("the probe offered a client certificate; it needs none")
			}
		})
	}
}
