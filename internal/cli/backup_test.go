package cli

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// newFakeServer starts a TLS server that asks for client certificates and
// serves h.
func newFakeServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// fakeEnv is the environment of a client of srv.
func fakeEnv(srv *httptest.Server) map[string]string {
	return map[string]string{EnvServer: srv.URL, EnvAPIKey: testAPIKey}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gunzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	return out
}

// dirEntries returns the names of the files in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestBackupName(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), "20250102_030405_kms.db.gzip"},
		{time.Date(2025, 11, 12, 19, 14, 51, 999, time.UTC), "20251112_191451_kms.db.gzip"},
		// The time zone of t, which is local time for time.Now().
		{time.Date(2025, 12, 31, 23, 30, 0, 0, time.FixedZone("X", 2*3600)), "20251231_233000_kms.db.gzip"},
		{time.Date(2025, 12, 31, 23, 30, 0, 0, time.UTC).In(time.FixedZone("Y", 3600)), "20260101_003000_kms.db.gzip"},
	}
	for _, tt := range tests {
		if got := backupName(tt.t); got != tt.want {
			t.Errorf("backupName(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestWriteGzip(t *testing.T) {
	snapshot := []byte(`{"format":1,"enclaves":[]}`)
	compressed := gzipped(t, snapshot)
	tests := []struct {
		name string
		in   []byte
		err  string // "" for success
	}{
		{name: "plain", in: snapshot},
		{name: "gzip", in: compressed},
		{name: "one byte", in: []byte("x")},
		{name: "empty", in: nil, err: "empty backup"},
		{name: "truncated gzip", in: compressed[:len(compressed)-5], err: "cannot read backup"},
		{name: "gzip with trailing garbage", in: append(bytes.Clone(compressed), "garbage"...), err: "cannot read backup"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		n, err := writeGzip(&out, bytes.NewReader(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if n != int64(out.Len()) {
			t.Errorf("%s: reported %d bytes, wrote %d", tt.name, n, out.Len())
		}
		want := tt.in
		if bytes.Equal(tt.in, compressed) {
			want = snapshot
			if !bytes.Equal(out.Bytes(), compressed) {
				t.Errorf("%s: a gzip backup was not copied as it is", tt.name)
			}
		}
		if got := gunzipped(t, out.Bytes()); !bytes.Equal(got, want) {
			t.Errorf("%s: wrote %q, want %q", tt.name, got, want)
		}
	}
}

func TestBackup(t *testing.T) {
	snapshot := []byte(`{"format":1,"cluster_id":"c","enclaves":[{"Name":"default"}]}`)
	// How the server sends the backup: as our server does (gzip
	// content encoding, which Go's client undoes), a gzip body without
	// content encoding, or plain.
	senders := map[string]func(w http.ResponseWriter){
		"content encoding": func(w http.ResponseWriter) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gzipped(t, snapshot))
		},
		"gzip body": func(w http.ResponseWriter) { w.Write(gzipped(t, snapshot)) },
		"plain":     func(w http.ResponseWriter) { w.Write(snapshot) },
	}
	for name, send := range senders {
		t.Run(name, func(t *testing.T) {
			srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.Path != "/v1/db" {
					http.Error(w, "unexpected request", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/octet-stream")
				send(w)
			})
			dir := t.TempDir()
			path := filepath.Join(dir, "b.gz")
			stdout, stderr, code := runCLI(t, fakeEnv(srv), "", "backup", path, "-k")
			if code != ExitOK {
				t.Fatalf("exit code %d: %s", code, stderr)
			}
			if !strings.HasPrefix(stdout, "Saved backup to "+path+" (") || stderr != "" {
				t.Errorf("stdout %q, stderr %q", stdout, stderr)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := gunzipped(t, data); !bytes.Equal(got, snapshot) {
				t.Errorf("backup holds %q", got)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
				t.Errorf("backup has mode %v, want 0600", fi.Mode().Perm())
			}
			if names := dirEntries(t, dir); len(names) != 1 {
				t.Errorf("files left: %q", names)
			}
		})
	}
}

func TestBackupDefaultName(t *testing.T) {
	srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("{}")) })
	nameRE := regexp.MustCompile(`^\d{8}_\d{6}_kms\.db\.gzip$`)

	dir := t.TempDir()
	t.Chdir(dir)
	if _, stderr, code := runCLI(t, fakeEnv(srv), "", "backup", "-k"); code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if names := dirEntries(t, dir); len(names) != 1 || !nameRE.MatchString(names[0]) {
		t.Errorf("files: %q", names)
	}

	// A directory gets a file of the default name.
	sub := filepath.Join(dir, "backups")
	os.Mkdir(sub, 0o700)
	if _, stderr, code := runCLI(t, fakeEnv(srv), "", "backup", sub, "-k"); code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if names := dirEntries(t, sub); len(names) != 1 || !nameRE.MatchString(names[0]) {
		t.Errorf("files in the directory: %q", names)
	}
}

func TestBackupFailureLeavesNoFile(t *testing.T) {
	compressed := gzipped(t, bytes.Repeat([]byte("snapshot "), 1000))
	tests := []struct {
		name    string
		handler http.HandlerFunc
		message string
	}{
		{"refused", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"message":"access denied: insufficient permissions"}`))
		}, "keep: access denied: insufficient permissions (check MINIO_KMS_API_KEY and the enclave)\n"},
		{"truncated", func(w http.ResponseWriter, r *http.Request) {
			w.Write(compressed[:len(compressed)/2])
		}, "keep: cannot read backup: unexpected EOF\n"},
	}
	for _, tt := range tests {
		srv := newFakeServer(t, tt.handler)
		dir := t.TempDir()
		path := filepath.Join(dir, "b.gz")
		os.WriteFile(path, []byte("an older backup"), 0o600)
		_, stderr, code := runCLI(t, fakeEnv(srv), "", "backup", path, "-k")
		if code != ExitError || stderr != tt.message {
			t.Errorf("%s: exit code %d, stderr %q; want %q", tt.name, code, stderr, tt.message)
		}
		if names := dirEntries(t, dir); len(names) != 1 {
			t.Errorf("%s: files left: %q", tt.name, names)
		}
		if b, _ := os.ReadFile(path); string(b) != "an older backup" {
			t.Errorf("%s: the existing file was changed", tt.name)
		}
	}
}

func TestBackupInterrupted(t *testing.T) {
	sent := make(chan struct{})
	srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 1<<16))
		w.(http.Flusher).Flush()
		close(sent)
		<-r.Context().Done()
	})
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sent
		time.Sleep(50 * time.Millisecond) // let the client write some of it
		cancel()
	}()
	var out, errOut bytes.Buffer
	a := &app{getenv: func(k string) string { return fakeEnv(srv)[k] }, stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
	code := a.run(ctx, []string{"backup", filepath.Join(dir, "b.gz"), "-k"})
	if code != ExitError || errOut.String() != "keep: interrupted\n" {
		t.Errorf("exit code %d, stderr %q", code, errOut.String())
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Errorf("files left: %q", names)
	}
}

func TestRestore(t *testing.T) {
	var (
		mu     sync.Mutex
		body   []byte
		length int64
	)
	srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut || r.URL.Path != "/v1/db" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		body, length = b, r.ContentLength
		mu.Unlock()
		if bytes.Contains(b, []byte("other HSM")) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"message":"invalid ciphertext"}`))
		}
	})
	host := strings.TrimPrefix(srv.URL, "https://")
	backup := gzipped(t, []byte(`{"format":1}`))
	path := filepath.Join(t.TempDir(), "b.gz")
	os.WriteFile(path, backup, 0o600)

	// To the first server in MINIO_KMS_SERVER, or to HOST.
	for _, args := range [][]string{{"restore", path}, {"restore", host, path}} {
		env := fakeEnv(srv)
		if len(args) == 3 {
			env[EnvServer] = "https://127.0.0.1:1"
		} else {
			env[EnvServer] += ",https://127.0.0.1:1"
		}
		stdout, stderr, code := runCLI(t, env, "", append(args, "-k")...)
		if code != ExitOK || stdout != "Restored "+path+" to the cluster of "+host+"\n" {
			t.Fatalf("%q: exit code %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
		mu.Lock()
		if !bytes.Equal(body, backup) || length != int64(len(backup)) {
			t.Errorf("%q: the server received %d bytes (Content-Length %d), want the %d of the file", args, len(body), length, len(backup))
		}
		mu.Unlock()
	}

	os.WriteFile(path, []byte("other HSM"), 0o600)
	_, stderr, code := runCLI(t, fakeEnv(srv), "", "restore", path, "-k")
	if code != ExitError || !strings.Contains(stderr, "another HSM key") {
		t.Errorf("exit code %d, stderr %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, fakeEnv(srv), "", "restore", "no-such-file", "-k"); code != ExitError || !strings.Contains(stderr, "no such file") {
		t.Errorf("exit code %d, stderr %q", code, stderr)
	}
	if _, stderr, code := runCLI(t, fakeEnv(srv), "", "restore", "bad host", path, "-k"); code != ExitUsage {
		t.Errorf("exit code %d, stderr %q", code, stderr)
	}
}
