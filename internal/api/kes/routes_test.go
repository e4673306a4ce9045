package kes

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/api/minkms"
	"github.com/keep-kms/keep/internal/service"
)

func TestRouteTable(t *testing.T) {
	seen := map[string]bool{}
	for _, rt := range routes {
		if seen[rt.path] {
			t.Errorf("route %s twice", rt.path)
		}
		seen[rt.path] = true
		if rt.method == "" || (!rt.shared && (rt.handle == nil || rt.command == "")) {
			t.Errorf("route %s: incomplete %+v", rt.path, rt)
		}
		if rt.metered && rt.failure == "" {
			t.Errorf("route %s: no failure message", rt.path)
		}
		// Every route declares who may call it; a command route declares
		// the command its rule names (KEY:IMPORT and KEY:MAC map to their
		// rules in the service).
		switch rt.auth.Access {
		case service.Public, service.Known, service.SysAdmin, service.EnclaveMember:
		case service.EnclaveCommand:
			if rt.rule == "" {
				t.Errorf("route %s: a command route without a policy rule", rt.path)
			}
		default:
			t.Errorf("route %s declares no access", rt.path)
		}
		health := rt.path == "/v1/ready" || rt.path == "/v1/status" || rt.path == "/v1/metrics"
		if rt.unlimited != health {
			t.Errorf("route %s: exempt from the rate limit = %v", rt.path, rt.unlimited)
		}
	}
	// Every route of spec §2.4, and the legacy bulk decryption.
	for _, path := range []string{
		"/version", "/v1/ready", "/v1/status", "/v1/metrics", "/v1/api",
		"/v1/key/create/", "/v1/key/import/", "/v1/key/describe/", "/v1/key/list/", "/v1/key/delete/",
		"/v1/key/generate/", "/v1/key/encrypt/", "/v1/key/decrypt/", "/v1/key/bulk/decrypt/", "/v1/key/hmac/",
		"/v1/policy/describe/", "/v1/policy/read/", "/v1/policy/list/",
		"/v1/identity/describe/", "/v1/identity/list/", "/v1/identity/self/describe",
		"/v1/log/error", "/v1/log/audit",
	} {
		if !seen[path] {
			t.Errorf("no route %s", path)
		}
	}
	if len(routes) != len(seen) || len(seen) != 23 {
		t.Errorf("%d routes, want the 23 above", len(routes))
	}

	list := apiList()
	if len(list) != len(routes) {
		t.Fatalf("/v1/api lists %d routes, want %d", len(list), len(routes))
	}
	want := map[string]apiInfo{
		"/version":          {Method: "GET", Path: "/version", Timeout: 10},
		"/v1/key/generate/": {Method: "PUT", Path: "/v1/key/generate/", MaxBody: 1_000_000, Timeout: 15},
		"/v1/key/delete/":   {Method: "DELETE", Path: "/v1/key/delete/", Timeout: 15},
		"/v1/log/audit":     {Method: "GET", Path: "/v1/log/audit"},
	}
	for _, api := range list {
		if w, ok := want[api.Path]; ok && api != w {
			t.Errorf("/v1/api: %+v, want %+v", api, w)
		}
	}
}

// newMux mounts both APIs on one mux, as the server does; registering
// panics if a pattern collides.
func newMux(t *testing.T) (*http.ServeMux, *API) {
	t.Helper()
	mux := http.NewServeMux()
	minkms.New(minkms.Config{Host: "127.0.0.1:7373"}).Register(mux)
	a := New(Config{})
	a.Register(mux)
	return mux, a
}

func TestMux(t *testing.T) {
	mux, a := newMux(t)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	tests := []struct {
		method, path string
		body         string
		status       int
		message      string // of a JSON error
		header       map[string]string
	}{
		// The mux redirects a subtree route without its slash, as KES's does;
		// this is what the client sends to list with an empty prefix.
		{method: "GET", path: "/v1/key/list", status: 301, header: map[string]string{"Location": "/v1/key/list/"}},
		{method: "GET", path: "/v1/policy/list", status: 301, header: map[string]string{"Location": "/v1/policy/list/"}},
		{method: "GET", path: "/v1/key/list?x=1", status: 301, header: map[string]string{"Location": "/v1/key/list/?x=1"}},
		{method: "POST", path: "/v1/key/create", status: 301, header: map[string]string{"Location": "/v1/key/create/"}},
		{method: "GET", path: "/v1/key//list/", status: 307}, // Go's ServeMux cleans paths with 307
		{method: "GET", path: "/v1/nope", status: 404},
		{method: "GET", path: "/v1/key/nope/x", status: 404},
		// Methods are checked first; POST is accepted where PUT is expected.
		{method: "GET", path: "/v1/key/create/k", status: 405, message: "received method 'GET' expected 'PUT'", header: map[string]string{"Accept": "PUT", "Allow": "PUT, POST"}},
		{method: "GET", path: "/v1/key/delete/k", status: 405, message: "received method 'GET' expected 'DELETE'"},
		{method: "PUT", path: "/v1/key/describe/k", status: 405, message: "received method 'PUT' expected 'GET'"},
		{method: "POST", path: "/v1/status", status: 405, message: "received method 'POST' expected 'GET'"},
		{method: "HEAD", path: "/v1/api", status: 405},
		{method: "POST", path: "/v1/key/create/k", status: 400, message: "insecure connection: TLS is required"},
		{method: "PUT", path: "/v1/key/create/k", status: 400, message: "insecure connection: TLS is required"},
		{method: "POST", path: "/v1/key/hmac/k", body: `{"message":""}`, status: 400, message: "insecure connection: TLS is required"},
		{method: "DELETE", path: "/v1/key/delete/k", status: 400, message: "insecure connection: TLS is required"},
		{method: "GET", path: "/v1/identity/self/describe", status: 400, message: "insecure connection: TLS is required"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		what := tt.method + " " + tt.path
		if resp.StatusCode != tt.status {
			t.Errorf("%s: %d %q, want %d", what, resp.StatusCode, body, tt.status)
			continue
		}
		for k, v := range tt.header {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("%s: header %s %q, want %q", what, k, got, v)
			}
		}
		if tt.message != "" {
			var e struct{ Message string }
			if json.Unmarshal(body, &e) != nil || e.Message != tt.message {
				t.Errorf("%s: body %q, want message %q", what, body, tt.message)
			}
			if resp.Header.Get("Content-Type") != "application/json" || resp.ContentLength != int64(len(body)) {
				t.Errorf("%s: Content-Type %q, Content-Length %d for %d bytes", what, resp.Header.Get("Content-Type"), resp.ContentLength, len(body))
			}
		}
	}

	// /version is the MinIO KMS API's, in a shape the KES client reads.
	resp, err := hc.Get(srv.URL + "/version")
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Version string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Version == "" || resp.StatusCode != 200 {
		t.Errorf("GET /version: %d %+v %v", resp.StatusCode, v, err)
	}
	resp.Body.Close()

	// The key routes were counted; the others were not.
	families, err := a.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			counted[f.GetName()] += m.GetCounter().GetValue()
		}
	}
	// 405 ×3 and 400 ×5 on metered routes; /v1/api and /v1/status are
	// not metered.
	if got := counted["kes_http_request_error"]; got != 8 {
		t.Errorf("kes_http_request_error = %v, want 8", got)
	}
}

func TestClientCertificate(t *testing.T) {
	mux, _ := newMux(t)
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+"/v1/key/generate/k", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Message string }
	json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode != 400 || e.Message != "tls: client certificate is required" {
		t.Errorf("no client certificate: %d %q", resp.StatusCode, e.Message)
	}
}

// TestDocumented keeps the table in docs/ARCHITECTURE.md in step with the
// route table: every route, with its policy command.
func TestDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/ARCHITECTURE.md")
	if err != nil {
		t.Skip("no docs/ARCHITECTURE.md:", err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## KES API\n")
	if !ok {
		t.Fatal(`docs/ARCHITECTURE.md has no section "KES API"`)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 5 || !strings.HasPrefix(strings.TrimSpace(cells[2]), "`/") {
			continue
		}
		path := strings.Trim(strings.TrimSpace(cells[2]), "`")
		if i := strings.Index(path, "{"); i >= 0 {
			path = path[:i]
		}
		rows[path] = cells[3]
	}
	for _, rt := range routes {
		row, ok := rows[rt.path]
		if !ok {
			t.Errorf("route %s is not in the KES API table", rt.path)
			continue
		}
		if rt.rule != "" && !strings.Contains(row, rt.rule) {
			t.Errorf("route %s: table says %q, want policy command %s", rt.path, row, rt.rule)
		}
		if rt.command != rt.rule && rt.command[0] != '/' && !strings.Contains(row, rt.command) {
			t.Errorf("route %s: table says %q, want audit command %s", rt.path, row, rt.command)
		}
	}
	if len(rows) != len(routes) {
		t.Errorf("the table has %d routes, the API %d", len(rows), len(routes))
	}
}
