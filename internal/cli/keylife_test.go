package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
)

// keyRequest is a request the fake key lifecycle routes received.
type keyRequest struct {
	method, path string
	body         map[string]any
}

// fakeKeys serves the key lifecycle routes of a fakeKMS: GET returns info,
// a PUT records its request and returns after(request), or the error
// status and message if status is set.
type fakeKeys struct {
	t      *testing.T
	info   string
	after  func(keyRequest) string
	status int
	msg    string
	// getStatus, if set, is the status of every GET, with msg.
	getStatus int

	mu   sync.Mutex
	reqs []keyRequest
}

func (k *fakeKeys) serve(w http.ResponseWriter, r *http.Request) {
	data, _ := io.ReadAll(r.Body)
	req := keyRequest{method: r.Method, path: r.URL.Path}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &req.body); err != nil {
			k.t.Errorf("%s %s: body is not JSON: %v", r.Method, r.URL.Path, err)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet {
		if k.getStatus != 0 {
			w.WriteHeader(k.getStatus)
			json.NewEncoder(w).Encode(map[string]string{"message": k.msg})
			return
		}
		w.Write([]byte(k.info))
		return
	}
	k.mu.Lock()
	k.reqs = append(k.reqs, req)
	k.mu.Unlock()
	if k.status != 0 {
		w.WriteHeader(k.status)
		json.NewEncoder(w).Encode(map[string]string{"message": k.msg})
		return
	}
	w.Write([]byte(k.after(req)))
}

// puts returns the PUT requests so far and forgets them.
func (k *fakeKeys) puts() []keyRequest {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := k.reqs
	k.reqs = nil
	return r
}

// newFakeKeys returns a fake MinIO KMS API server whose key routes k
// serves.
func newFakeKeys(t *testing.T, k *fakeKeys) *fakeKMS {
	k.t = t
	f := newFakeKMS(t, ok(t, 0))
	f.keys = k.serve
	return f
}

// keyInfoJSONText returns the KeyInfo of key k with the versions given as
// "N:state" or "N:pending-deletion@RFC3339".
func keyInfoJSONText(name string, versions ...string) string {
	var vs []string
	for _, v := range versions {
		n, st, _ := strings.Cut(v, ":")
		st, at, _ := strings.Cut(st, "@")
		s := fmt.Sprintf(`{"version":%s,"type":"AES256","state":%q,"created_at":"2026-01-02T03:04:05Z","created_by":"h1:x"`, n, st)
		if at != "" {
			s += fmt.Sprintf(`,"delete_at":%q`, at)
		}
		vs = append(vs, s+"}")
	}
	return fmt.Sprintf(`{"enclave":"default","name":%q,"rotate_every":"","versions":[%s]}`, name, strings.Join(vs, ","))
}

func TestRmKey(t *testing.T) {
	deleteAt := time.Now().Add(7 * 24 * time.Hour).UTC().Truncate(time.Second)
	keys := &fakeKeys{
		info: keyInfoJSONText("k", "1:active", "2:active", "3:active"),
		after: func(r keyRequest) string {
			if r.body["all"] == true && r.body["window"] == "0s" {
				return keyInfoJSONText("k")
			}
			v := fmt.Sprint(r.body["version"])
			at := "@" + deleteAt.Format(time.RFC3339)
			switch v {
			case "1":
				return keyInfoJSONText("k", "1:pending-deletion"+at, "2:active", "3:active")
			case "3":
				return keyInfoJSONText("k", "1:active", "2:active", "3:pending-deletion"+at)
			}
			return keyInfoJSONText("k", "1:active", "2:active", "3:active")
		},
	}
	f := newFakeKeys(t, keys)
	yes := func() bool { return true }
	tests := []struct {
		name   string
		args   []string
		tty    func() bool
		stdin  string
		code   int
		body   map[string]any // of the PUT; nil: none is sent
		path   string
		output []string // parts of stdout, or of stderr if code is not 0
	}{
		{
			name: "old version", args: []string{"-v", "1"},
			body: map[string]any{"version": 1.0}, path: "/v1/keys/default/k/delete",
			output: []string{"version 1 of key k is destroyed at " + deleteAt.Local().Format("2006-01-02 15:04:05"), "(in 6d23h)", "cancel with 'keep cancel-rm-key k -v 1'"},
		},
		{
			name: "in an enclave", args: []string{"-v", "1", "-e", "tenant", "--force"},
			body: map[string]any{"version": 1.0, "force": true}, path: "/v1/keys/tenant/k/delete",
			output: []string{"cancel with 'keep cancel-rm-key k -v 1 -e tenant'"},
		},
		{
			name: "latest without --yes", code: ExitUsage,
			output: []string{"Delete version 3, the latest version, of key k", "add --yes"},
		},
		{
			name: "latest by number without --yes", args: []string{"-v", "3"}, code: ExitUsage,
			output: []string{"the latest version", "add --yes"},
		},
		{
			name: "all without --yes", args: []string{"--all"}, code: ExitUsage,
			output: []string{"Delete every version of key k", "add --yes"},
		},
		{
			name: "latest with --yes and a window", args: []string{"--yes", "--window", "3d"},
			body: map[string]any{"version": 3.0, "window": "72h0m0s"}, path: "/v1/keys/default/k/delete",
			output: []string{"version 3 of key k is destroyed at", "keep cancel-rm-key k -v 3"},
		},
		{
			name: "all now", args: []string{"--all", "-y", "--window", "0s"},
			body: map[string]any{"all": true, "window": "0s"}, path: "/v1/keys/default/k/delete",
			output: []string{"version 1 of key k is destroyed\nversion 2 of key k is destroyed\nversion 3 of key k is destroyed\n"},
		},
		{
			name: "confirmed on a terminal", tty: yes, stdin: "y\n",
			body: map[string]any{"version": 3.0}, path: "/v1/keys/default/k/delete",
			output: []string{"version 3 of key k is destroyed at"},
		},
		{
			name: "refused on a terminal", tty: yes, stdin: "\n", code: ExitError,
			output: []string{"not confirmed: nothing changed"},
		},
		{
			name: "bad window", args: []string{"-v", "1", "--window", "soon"}, code: ExitUsage,
			output: []string{"--window: ", "such as 90d"},
		},
		{
			name: "negative window", args: []string{"-v", "1", "--window", "-1h"}, code: ExitUsage,
			output: []string{"--window: negative duration"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			a := &app{
				getenv:   func(k string) string { return map[string]string{EnvServer: f.srv.URL, EnvAPIKey: testAPIKey}[k] },
				stdin:    strings.NewReader(tt.stdin),
				stdinTTY: tt.tty,
				stdout:   &out,
				stderr:   &errOut,
			}
			code := a.run(t.Context(), append([]string{"rm-key", "k", "-k"}, tt.args...))
			text := out.String()
			if tt.code != ExitOK {
				text = errOut.String()
			}
			if code != tt.code {
				t.Fatalf("exit code %d, want %d; stderr %q", code, tt.code, errOut.String())
			}
			for _, s := range tt.output {
				if !strings.Contains(text, s) {
					t.Errorf("output %q does not contain %q", text, s)
				}
			}
			puts := keys.puts()
			if tt.body == nil {
				if len(puts) != 0 {
					t.Errorf("sent %+v, want nothing", puts)
				}
				return
			}
			if len(puts) != 1 || puts[0].path != tt.path || fmt.Sprint(puts[0].body) != fmt.Sprint(tt.body) {
				t.Errorf("sent %+v, want PUT %s %v", puts, tt.path, tt.body)
			}
		})
	}
}

// TestRmKeyWithoutStatus: a caller allowed KEY:DELETE but not KEY:STATUS
// deletes, but confirms any version, since which is the latest is unknown.
func TestRmKeyWithoutStatus(t *testing.T) {
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	keys := &fakeKeys{getStatus: http.StatusForbidden, msg: "access denied", after: func(r keyRequest) string {
		if r.body["all"] == true {
			return `{"name":"k","versions":[]}`
		}
		return keyInfoJSONText("k", "1:pending-deletion@"+at, "2:active")
	}}
	f := newFakeKeys(t, keys)
	if _, stderr, code := f.run("", "rm-key", "k", "-v", "1"); code != ExitUsage || !strings.Contains(stderr, "which may be its latest version") || !strings.Contains(stderr, "--yes") {
		t.Errorf("-v 1: exit code %d, stderr %q", code, stderr)
	}
	if puts := keys.puts(); len(puts) != 0 {
		t.Errorf("-v 1 unconfirmed: sent %+v", puts)
	}
	stdout, stderr, code := f.run("", "rm-key", "k", "-v", "1", "--yes")
	if code != ExitOK || !strings.HasPrefix(stdout, "version 1 of key k is destroyed at") {
		t.Errorf("-v 1 --yes: exit code %d, output %q: %s", code, stdout, stderr)
	}
	if puts := keys.puts(); len(puts) != 1 || puts[0].body["version"] != 1.0 {
		t.Errorf("-v 1 --yes: sent %+v", puts)
	}
	if _, stderr, code = f.run("", "rm-key", "k"); code != ExitUsage || !strings.Contains(stderr, "Delete the latest version of key k") {
		t.Errorf("latest: exit code %d, stderr %q", code, stderr)
	}
	stdout, stderr, code = f.run("", "rm-key", "k", "--all", "--yes", "--window", "0s")
	if code != ExitOK || stdout != "every version of key k is destroyed\n" {
		t.Errorf("--all: exit code %d, output %q: %s", code, stdout, stderr)
	}
	// Another error of the GET is the command's.
	keys.getStatus, keys.msg = http.StatusNotFound, "key does not exist"
	if _, stderr, code = f.run("", "rm-key", "k", "-v", "1", "--yes"); code != ExitError || !strings.Contains(stderr, "key does not exist") {
		t.Errorf("missing key: exit code %d, stderr %q", code, stderr)
	}
}

func TestStateCommands(t *testing.T) {
	keys := &fakeKeys{}
	f := newFakeKeys(t, keys)
	tests := []struct {
		args   []string
		after  string
		path   string
		body   map[string]any
		output string
	}{
		{
			args:  []string{"disable-key", "k", "-v", "2", "--force"},
			after: keyInfoJSONText("k", "1:active", "2:disabled"),
			path:  "/v1/keys/default/k/disable", body: map[string]any{"version": 2.0, "force": true},
			output: "version 2 of key k is disabled; enable it with 'keep enable-key k -v 2'\n",
		},
		{
			args:  []string{"disable-key", "k", "-e", "e"},
			after: keyInfoJSONText("k", "1:active", "2:disabled"),
			path:  "/v1/keys/e/k/disable", body: map[string]any{},
			output: "version 2 of key k is disabled; enable it with 'keep enable-key k -v 2 -e e'\n",
		},
		{
			args:  []string{"enable-key", "k", "--all"},
			after: keyInfoJSONText("k", "1:active", "2:active"),
			path:  "/v1/keys/default/k/enable", body: map[string]any{"all": true},
			output: "version 1 of key k is active\nversion 2 of key k is active\n",
		},
		{
			args:  []string{"cancel-rm-key", "k", "-v", "1"},
			after: keyInfoJSONText("k", "1:active", "2:disabled"),
			path:  "/v1/keys/default/k/cancel-delete", body: map[string]any{"version": 1.0},
			output: "version 1 of key k is active\n",
		},
	}
	for _, tt := range tests {
		keys.after = func(keyRequest) string { return tt.after }
		stdout, stderr, code := f.run("", tt.args...)
		if code != ExitOK {
			t.Errorf("%v: exit code %d: %s", tt.args, code, stderr)
			continue
		}
		if stdout != tt.output {
			t.Errorf("%v: output %q, want %q", tt.args, stdout, tt.output)
		}
		puts := keys.puts()
		if len(puts) != 1 || puts[0].path != tt.path || fmt.Sprint(puts[0].body) != fmt.Sprint(tt.body) {
			t.Errorf("%v: sent %+v, want PUT %s %v", tt.args, puts, tt.path, tt.body)
		}
	}

	// A version in use: the server's refusal, with the advice to force it.
	keys.status, keys.msg = http.StatusConflict, "key version is in use: version 2 of key k decrypted 5 data keys in the last 30 days"
	_, stderr, code := f.run("", "disable-key", "k")
	if code != ExitError || !strings.Contains(stderr, "decrypted 5 data keys") || !strings.Contains(stderr, "add --force") {
		t.Errorf("in use: exit code %d, stderr %q", code, stderr)
	}
	keys.puts()
	if _, stderr, code = f.run("", "cancel-rm-key", "k", "--force"); code != ExitUsage || !strings.Contains(stderr, "unknown flag: --force") {
		t.Errorf("cancel-rm-key --force: exit code %d, stderr %q", code, stderr)
	}
}

func TestRotateKey(t *testing.T) {
	next := time.Now().Add(90*24*time.Hour + time.Minute).UTC().Truncate(time.Second)
	keys := &fakeKeys{after: func(r keyRequest) string {
		if r.body["every"] == "0s" {
			return `{"name":"k","rotate_every":"","versions":[]}`
		}
		return fmt.Sprintf(`{"name":"k","rotate_every":%q,"next_rotation":%q,"versions":[]}`, r.body["every"], next.Format(time.RFC3339))
	}}
	f := newFakeKeys(t, keys)

	if _, stderr, code := f.run("", "rotate-key", "k", "--every", "3 months"); code != ExitUsage || !strings.Contains(stderr, "--every: ") {
		t.Errorf("--every 3 months: exit code %d, stderr %q", code, stderr)
	}
	stdout, stderr, code := f.run("", "rotate-key", "k", "--every", "90d")
	if code != ExitOK || !strings.HasPrefix(stdout, "key k is rotated every 90d; next at "+next.Local().Format("2006-01-02 15:04:05")) {
		t.Errorf("exit code %d, output %q: %s", code, stdout, stderr)
	}
	if puts := keys.puts(); len(puts) != 1 || puts[0].path != "/v1/keys/default/k/rotation" || puts[0].body["every"] != "2160h0m0s" {
		t.Errorf("sent %+v", puts)
	}
	stdout, _, _ = f.run("", "rotate-key", "k", "--every", "0")
	if stdout != "key k is not rotated automatically\n" {
		t.Errorf("--every 0: output %q", stdout)
	}
	if puts := keys.puts(); len(puts) != 1 || puts[0].body["every"] != "0s" {
		t.Errorf("--every 0: sent %+v", puts)
	}
	if _, stderr, code = f.run("", "rotate-key", "k"); code != ExitUsage || !strings.Contains(stderr, "--every is required") {
		t.Errorf("no --every: exit code %d, stderr %q", code, stderr)
	}

	// add-key --rotate creates the key, then sets its period.
	stdout, stderr, code = f.run("", "add-key", "k", "-e", "tenant", "--rotate", "36h")
	if code != ExitOK || !strings.HasPrefix(stdout, "key k is rotated every 1d12h") {
		t.Errorf("add-key --rotate: exit code %d, output %q: %s", code, stdout, stderr)
	}
	var req pb.CreateKeyRequest
	if enc := f.request(0, cmds.KeyCreate, &req); enc != "tenant" || req.Name != "k" {
		t.Errorf("add-key --rotate: create request %v in %q", &req, enc)
	}
	if puts := keys.puts(); len(puts) != 1 || puts[0].path != "/v1/keys/tenant/k/rotation" || puts[0].body["every"] != "36h0m0s" {
		t.Errorf("add-key --rotate: sent %+v", puts)
	}
	// No next rotation: the server rotates no key whose latest version
	// does not serve.
	keys.after = func(keyRequest) string { return `{"name":"k","rotate_every":"72h0m0s","versions":[]}` }
	if stdout, _, _ = f.run("", "rotate-key", "k", "--every", "3d"); stdout != "key k is rotated every 3d; paused while the latest version is not active\n" {
		t.Errorf("paused: output %q", stdout)
	}
	keys.puts()
	// Without --rotate, add-key leaves the period to the cluster.
	f.run("", "add-key", "k2")
	if puts := keys.puts(); len(puts) != 0 {
		t.Errorf("add-key: sent %+v", puts)
	}
	// The key is there when the period cannot be set: the error says so.
	keys.status, keys.msg = http.StatusForbidden, "access denied"
	if _, stderr, code = f.run("", "add-key", "k3", "--rotate", "90d"); code != ExitError ||
		!strings.Contains(stderr, "key k3 was created, but its rotation period was not set") || !strings.Contains(stderr, "access denied") {
		t.Errorf("add-key --rotate refused: exit code %d, stderr %q", code, stderr)
	}
}

func TestStatKey(t *testing.T) {
	keys := &fakeKeys{info: `{"enclave":"default","name":"k","rotate_every":"2160h0m0s","next_rotation":"2027-03-06T10:00:00Z",
		"versions":[
		 {"version":2,"type":"AES256","state":"pending-deletion","delete_at":"2026-12-13T10:00:00Z","created_at":"2026-12-01T10:00:00Z","created_by":"h1:b",
		  "usage":{"last_generate":"2026-12-05T10:00:00Z","last_decrypt":"","decrypts_30d":0}},
		 {"version":1,"type":"ChaCha20","state":"disabled","created_at":"2026-11-01T10:00:00Z","created_by":"h1:a","kes":true,
		  "usage":{"last_decrypt":"2026-12-04T10:00:00Z","generates_30d":7,"decrypts_30d":42}}]}`}
	f := newFakeKeys(t, keys)

	stdout, stderr, code := f.run("", "stat-key", "k", "--json")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	got := decodeJSON[keyInfoJSON](t, stdout)
	if got.Name != "k" || got.Version != 2 || got.State != "pending-deletion" || got.RotateEvery != "2160h0m0s" ||
		got.NextRotation != "2027-03-06T10:00:00Z" || len(got.Versions) != 2 {
		t.Fatalf("JSON %+v", got)
	}
	v1, v2 := got.Versions[0], got.Versions[1]
	if v1.Version != 1 || v1.State != "disabled" || !v1.KES || v1.Usage.Decrypts30d != 42 || v1.Usage.Generates30d != 7 || v1.Usage.LastDecrypt != "2026-12-04T10:00:00Z" || v1.DeleteAt != "" ||
		v2.DeleteAt != "2026-12-13T10:00:00Z" || v2.Usage.LastGenerate != "2026-12-05T10:00:00Z" || v2.Usage.LastDecrypt != "" {
		t.Errorf("versions %+v", got.Versions)
	}

	stdout, _, _ = f.run("", "stat-key", "k", "-v", "1")
	for _, want := range []string{
		"Version     1\n", "State       disabled\n", "Rotation    every 90d, next " + time.Date(2027, 3, 6, 10, 0, 0, 0, time.UTC).Local().Format("2006-01-02 15:04:05"),
		"VERSION  TYPE      STATE             DESTROYED AT", "GENERATES 30D  DECRYPTS 30D",
		"\n1        ChaCha20  disabled          -  ", "  KES     ", "  7              42\n",
		"\n2        AES256    pending-deletion  " + time.Date(2026, 12, 13, 10, 0, 0, 0, time.UTC).Local().Format("2006-01-02 15:04:05"),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output does not contain %q:\n%s", want, stdout)
		}
	}
	if _, stderr, code = f.run("", "stat-key", "k", "-v", "7"); code != ExitError || !strings.Contains(stderr, "key k has no version 7") {
		t.Errorf("-v 7: exit code %d, stderr %q", code, stderr)
	}
}

// TestLsKeyStates: ls-key shows the state of the keys whose status it may
// read, and lists the others without one.
func TestLsKeyStates(t *testing.T) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	f := newFakeKMS(t, ok(t, cmds.KeyList, &pb.ListKeysResponse{Keys: []*pb.KeyStatusResponse{
		{Name: "a", Version: 1, Type: "AES256", CreatedAt: pb.Time(created)},
		{Name: "secret", Version: 1, Type: "AES256", CreatedAt: pb.Time(created)},
		{Name: "gone", Version: 1, Type: "AES256", CreatedAt: pb.Time(created)},
	}}))
	f.keys = func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/keys/default/a":
			w.Write([]byte(keyInfoJSONText("a", "1:active", "2:disabled")))
		case "/v1/keys/default/secret":
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"message":"access denied"}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"key does not exist"}`))
		}
	}
	stdout, stderr, code := f.run("", "ls-key", "--json")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	keys := decodeJSON[[]keyJSON](t, stdout)
	if len(keys) != 3 || keys[0].State != "disabled" || keys[1].State != "" || keys[2].State != "" {
		t.Errorf("keys %+v", keys)
	}
	// Another error is the command's.
	f.keys = func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"message":"no leader"}`))
	}
	if _, stderr, code = f.run("", "ls-key"); code != ExitError || !strings.Contains(stderr, "no leader") {
		t.Errorf("unavailable: exit code %d, stderr %q", code, stderr)
	}
}

func TestKeyRouteFailover(t *testing.T) {
	keys := &fakeKeys{info: keyInfoJSONText("k", "1:active")}
	f := newFakeKeys(t, keys)
	// Nothing listens on port 1: the command goes on to the next server,
	// as kms-go does.
	env := map[string]string{EnvServer: "https://127.0.0.1:1," + f.srv.URL, EnvAPIKey: testAPIKey}
	stdout, stderr, code := runCLI(t, env, "", "stat-key", "k", "-k")
	if code != ExitOK || !strings.Contains(stdout, "State       active") {
		t.Errorf("exit code %d, output %q: %s", code, stdout, stderr)
	}
}

// TestStdinNotTerminal: /dev/null is a character device, and no terminal
// to ask on (the prompt of rm-key would read an empty answer).
func TestStdinNotTerminal(t *testing.T) {
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Skip(err)
	}
	defer null.Close()
	if (&app{stdin: null}).stdinIsTerminal() {
		t.Errorf("%s is taken for a terminal", os.DevNull)
	}
	if (&app{stdin: strings.NewReader("y\n")}).stdinIsTerminal() {
		t.Error("a reader is taken for a terminal")
	}
}

func TestAPITime(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{in: `"2026-12-13T10:00:00Z"`, want: time.Date(2026, 12, 13, 10, 0, 0, 0, time.UTC)},
		{in: `""`},
		{in: `null`},
		{in: `"tomorrow"`, wantErr: true},
		{in: `42`, wantErr: true},
	}
	for _, tt := range tests {
		var got apiTime
		err := json.Unmarshal([]byte(tt.in), &got)
		if (err != nil) != tt.wantErr || !got.Equal(tt.want) {
			t.Errorf("%s: %v, %v; want %v (error %v)", tt.in, got.Time, err, tt.want, tt.wantErr)
		}
	}
}
