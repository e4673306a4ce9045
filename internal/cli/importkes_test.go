package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// kesKeystore writes an fs keystore with the given files (name → content)
// and returns its directory.
func kesKeystore(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// importServer answers import requests by the key's file content: the
// content names the reply ("imported", "exists", "400", "409", …).
type importServer struct {
	mu       sync.Mutex
	requests []*http.Request
	bodies   map[string]string
}

func (s *importServer) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.requests = append(s.requests, r)
	if s.bodies == nil {
		s.bodies = map[string]string{}
	}
	s.bodies[r.URL.Path] = string(body)
	s.mu.Unlock()
	if r.Method != http.MethodPut || !strings.HasPrefix(r.URL.Path, "/v1/kes/import/") || r.Header.Get("Content-Type") != "application/octet-stream" {
		http.Error(w, "unexpected request", http.StatusTeapot)
		return
	}
	name := r.PathValue("name")
	w.Header().Set("Content-Type", "application/json")
	status := string(body)
	if r.URL.Query().Get("dry-run") == "true" && status == "imported" {
		status = "new"
	}
	switch status {
	case "imported", "exists", "new":
		json.NewEncoder(w).Encode(map[string]any{"name": name, "status": status, "format": "protobuf-base64", "algorithm": "AES256", "hmac": true})
	case "weird":
		json.NewEncoder(w).Encode(map[string]any{"name": name, "status": "maybe"})
	default:
		var code int
		fmt.Sscan(status, &code)
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"message":"message %d"}`, code)
	}
}

func (s *importServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func newImportServer(t *testing.T) (*importServer, map[string]string) {
	s := new(importServer)
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/kes/import/{enclave}/{name}", s.handle)
	mux.HandleFunc("/", s.handle)
	srv := newFakeServer(t, mux.ServeHTTP)
	return s, fakeEnv(srv)
}

func TestImportKESOutcomes(t *testing.T) {
	s, env := newImportServer(t)
	ks := kesKeystore(t, map[string]string{
		"new-1": "imported", "new-2": "imported", "old": "exists",
		"bad": "400", "taken": "409", "nope": "403", "boom": "500",
		"skip.me": "imported",
	})
	stdout, stderr, code := runCLI(t, env, "", "import-kes", "-k", "--fs", ks, "-e", "tenant")
	if code != ExitError {
		t.Errorf("exit code %d, want %d", code, ExitError)
	}
	for _, want := range []string{
		"Imported from the fs keystore " + ks + " into enclave tenant:",
		"  imported:       2\n", "  already there:  1\n", "  refused:        4\n", "  skipped:        1\n",
		"  bad    malformed: message 400\n",
		"  boom   error: 500 message 500\n",
		"  nope   forbidden: message 403\n",
		"  taken  conflict: message 409 (the name exists in the enclave with other material; not overwritten)\n",
		"Skipped (not KES keys):\n  skip.me  name not accepted by KES as a key name\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout does not contain %q:\n%s", want, stdout)
		}
	}
	for _, want := range []string{"refused bad: malformed: message 400\n", "refused taken: conflict: ", "keep: 4 of 7 keys refused (listed above)\n"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr)
		}
	}
	if s.count() != 7 {
		t.Errorf("%d requests, want one per key (7)", s.count())
	}
	if got := s.bodies["/v1/kes/import/tenant/new-1"]; got != "imported" {
		t.Errorf("body of new-1 %q, want the file's content", got)
	}
}

func TestImportKESDryRun(t *testing.T) {
	s, env := newImportServer(t)
	ks := kesKeystore(t, map[string]string{"a": "imported", "b": "exists", "c": "409"})
	if err := os.Mkdir(filepath.Join(ks, "d"), 0o700); err != nil {
		t.Fatal(err)
	}
	stdout, _, code := runCLI(t, env, "", "import-kes", "-k", "--fs", ks, "--dry-run")
	if code != ExitError {
		t.Errorf("exit code %d, want %d (a key would be refused)", code, ExitError)
	}
	want := "Dry run: nothing was imported from the fs keystore " + ks + " into enclave default.\n\n" +
		"KEY  ACTION             DETAIL\n" +
		"a    import             protobuf-base64, AES256, HMAC\n" +
		"b    already there      protobuf-base64, AES256, HMAC\n" +
		"c    refuse (conflict)  message 409 (the name exists in the enclave with other material; not overwritten)\n" +
		"d    skip               directory\n\n" +
		"Would import 1, already there 1, would refuse 1, skipped 1.\n"
	if stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}
	for _, r := range s.requests {
		if r.URL.RawQuery != "dry-run=true" || !strings.HasPrefix(r.URL.Path, "/v1/kes/import/default/") {
			t.Errorf("request %s, want a dry run in the default enclave", r.URL)
		}
	}
}

func TestImportKESRetry(t *testing.T) {
	var calls atomic.Int32
	srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if calls.Add(1) <= 3 {
			w.Header().Set("Retry-After", "0")
			http.Error(w, `{"message":"too many requests"}`, http.StatusTooManyRequests)
			return
		}
		fmt.Fprintf(w, `{"name":"k","status":"imported"}`)
	})
	ks := kesKeystore(t, map[string]string{"k": "x"})
	stdout, stderr, code := runCLI(t, fakeEnv(srv), "", "import-kes", "-k", "--fs", ks)
	if code != ExitOK || !strings.Contains(stdout, "imported:       1") || calls.Load() != 4 {
		t.Errorf("exit %d after %d calls\nstdout: %s\nstderr: %s", code, calls.Load(), stdout, stderr)
	}
}

// TestImportKESStops checks that errors every key would get stop the
// import at once, with the error alone.
func TestImportKESStops(t *testing.T) {
	files := map[string]string{}
	for i := range 100 {
		files[fmt.Sprintf("k%03d", i)] = "404"
	}
	ks := kesKeystore(t, files)
	for _, tt := range []struct {
		name, reply, msg string
	}{
		{"no enclave", "404", "keep: message 404"},
		{"unknown reply", "weird", `keep: invalid reply to the import of k0`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for name := range files {
				os.WriteFile(filepath.Join(ks, name), []byte(tt.reply), 0o600)
			}
			s, env := newImportServer(t)
			stdout, stderr, code := runCLI(t, env, "", "import-kes", "-k", "--fs", ks)
			if code != ExitError || stdout != "" || !strings.HasPrefix(stderr, tt.msg) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			if n := s.count(); n > 2*importWorkers {
				t.Errorf("%d requests after the first error, want the import stopped", n)
			}
		})
	}
}

// TestImportKESInterrupted checks the summary of an import stopped by
// Ctrl-C: what was done, and that a re-run completes it.
func TestImportKESInterrupted(t *testing.T) {
	files := map[string]string{}
	for i := range 50 {
		files[fmt.Sprintf("k%03d", i)] = "x"
	}
	ks := kesKeystore(t, files)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int32
	srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if calls.Add(1) == 10 {
			cancel()
		}
		if calls.Load() >= 10 {
			<-r.Context().Done()
			return
		}
		fmt.Fprintf(w, `{"name":"k","status":"imported"}`)
	})
	var out, errOut bytes.Buffer
	a := &app{getenv: func(k string) string { return fakeEnv(srv)[k] }, stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
	code := a.run(ctx, []string{"import-kes", "-k", "--fs", ks})
	if code != ExitError || errOut.String() != "keep: interrupted\n" {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
	// The keys answered before the cancellation count; one answered as
	// it came may not.
	m := regexp.MustCompile(`imported: +(\d+)\n`).FindStringSubmatch(out.String())
	n := 0
	if m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	if n < 1 || n > 9 || !strings.Contains(out.String(), fmt.Sprintf("Stopped after %d of 50 entries; run the same command again to complete the import.", n)) {
		t.Errorf("stdout:\n%s", out.String())
	}
}

func TestImportKESFailover(t *testing.T) {
	_, env := newImportServer(t)
	env[EnvServer] = "https://127.0.0.1:1," + env[EnvServer]
	ks := kesKeystore(t, map[string]string{"a": "imported", "b": "imported", "c": "imported"})
	stdout, stderr, code := runCLI(t, env, "", "import-kes", "-k", "--fs", ks)
	if code != ExitOK || !strings.Contains(stdout, "imported:       3") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

func TestImportKESUsage(t *testing.T) {
	ks := kesKeystore(t, nil)
	env := map[string]string{EnvAPIKey: testAPIKey, EnvServer: "https://127.0.0.1:1"}
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, ExitUsage, "give --config FILE or --fs DIR"},
		{[]string{"--fs", ks, "--config", "x.yml"}, ExitUsage, "--config and --fs cannot be used together"},
		{[]string{"--fs", ks, "--key", "a["}, ExitUsage, `invalid key pattern "a["`},
		{[]string{"--fs", ks, "-e", "a/b"}, ExitUsage, "enclave name"},
		{[]string{"--fs", ks, "extra"}, ExitUsage, "too many arguments"},
		{[]string{"--fs", filepath.Join(ks, "missing")}, ExitError, "does not exist"},
		{[]string{"--config", filepath.Join(ks, "missing.yml")}, ExitError, "cannot read KES config"},
		{[]string{"--fs", ks, "--key", "a*"}, ExitError, `no entry of the fs keystore ` + ks + ` matches "a*"`},
	} {
		stdout, stderr, code := runCLI(t, env, "", append([]string{"import-kes"}, tt.args...)...)
		if code != tt.code || !strings.Contains(stderr, tt.msg) {
			t.Errorf("import-kes %v: exit %d, stderr %q; want %d with %q (stdout %q)", tt.args, code, stderr, tt.code, tt.msg, stdout)
		}
	}
	stdout, _, code := runCLI(t, env, "", "import-kes", "--fs", ks)
	if code != ExitOK || stdout != "The fs keystore "+ks+" is empty: nothing to import.\n" {
		t.Errorf("empty keystore: exit %d, stdout %q", code, stdout)
	}
}
