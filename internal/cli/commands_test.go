package cli

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/proto"
)

// fakeKMS is a MinIO KMS API server that records the commands it receives
// and answers with what reply returns. It checks the wiring of the client
// commands (flags → request, reply → output); the real server is tested
// end to end in test/e2e.
type fakeKMS struct {
	t     *testing.T
	srv   *httptest.Server
	reply func(cmd cmds.Command, body []byte) (status int, frames []byte)
	// keys serves the key lifecycle routes, /v1/keys/…; nil: every key
	// has one active version.
	keys http.HandlerFunc

	mu       sync.Mutex
	enclaves []string // the enclave of each request
	bodies   [][]byte // the body of each request
	callers  []string // the identity of the client certificate of each request
}

const testAPIKey = "k1:AqwjUvaWEE9O83quGOkiO_2D1x37Za9gE4L5UHdq0Ag"

func newFakeKMS(t *testing.T, reply func(cmd cmds.Command, body []byte) (int, []byte)) *fakeKMS {
	f := &fakeKMS{t: t, reply: reply}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serveHTTP))
	f.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKMS) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/v1/keys/") {
		if f.keys != nil {
			f.keys(w, r)
			return
		}
		name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		w.Write([]byte(`{"name":"` + name + `","versions":[{"version":1,"type":"AES256","state":"active"}]}`))
		return
	}
	enclave, ok := strings.CutPrefix(r.URL.Path, "/v1/kms")
	if r.Method != http.MethodPost || !ok {
		http.Error(w, "unexpected request "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	caller, _ := mtls.PeerIdentity(r.TLS)

	f.mu.Lock()
	f.enclaves = append(f.enclaves, strings.Trim(enclave, "/"))
	f.bodies = append(f.bodies, body)
	f.callers = append(f.callers, caller.String())
	f.mu.Unlock()

	if len(body) < 2 {
		http.Error(w, "short body", http.StatusBadRequest)
		return
	}
	status, frames := f.reply(cmds.Command(binary.BigEndian.Uint16(body)), body)
	if status != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		msg, _ := json.Marshal(map[string]string{"message": string(frames)})
		w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
		w.WriteHeader(status)
		w.Write(msg)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(frames)))
	w.Write(frames)
}

// run runs keep with args against the fake server.
func (f *fakeKMS) run(stdin string, args ...string) (stdout, stderr string, code int) {
	env := map[string]string{EnvServer: f.srv.URL, EnvAPIKey: testAPIKey}
	return runCLI(f.t, env, stdin, append(args, "--insecure")...)
}

// request decodes the i-th request, which must hold exactly one command
// cmd, into msg and returns its enclave.
func (f *fakeKMS) request(i int, cmd cmds.Command, msg proto.Message) string {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.bodies) {
		f.t.Fatalf("only %d requests, want request %d", len(f.bodies), i)
	}
	rest, err := cmds.DecodePB(f.bodies[i], cmd, msg)
	if err != nil {
		f.t.Fatalf("request %d: %v", i, err)
	}
	if len(rest) != 0 {
		f.t.Fatalf("request %d holds more than one command", i)
	}
	return f.enclaves[i]
}

// frame encodes msg as the reply to cmd.
func frame(t *testing.T, cmd cmds.Command, msgs ...proto.Message) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = cmds.EncodePB(b, cmd, m); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func ok(t *testing.T, cmd cmds.Command, msgs ...proto.Message) func(cmds.Command, []byte) (int, []byte) {
	return func(cmds.Command, []byte) (int, []byte) { return http.StatusOK, frame(t, cmd, msgs...) }
}

func TestAddKey(t *testing.T) {
	f := newFakeKMS(t, ok(t, 0))
	if _, stderr, code := f.run("", "add-key", "my-key", "-e", "tenant", "--type", "chacha20", "--version"); code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	var req pb.CreateKeyRequest
	if enc := f.request(0, cmds.KeyCreate, &req); enc != "tenant" {
		t.Errorf("enclave %q, want tenant", enc)
	}
	if req.Name != "my-key" || req.Type != "ChaCha20" || !req.AddVersion {
		t.Errorf("request %v", &req)
	}
	if f.callers[0] != "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0" {
		t.Errorf("client identity %s, not the one of the API key", f.callers[0])
	}

	material := strings.Repeat("A", 43) + "="
	if _, stderr, code := f.run("", "add-key", "imported", "--import", material); code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	var imp pb.ImportKeyRequest
	if enc := f.request(1, cmds.KeyImport, &imp); enc != "" {
		t.Errorf("enclave %q, want the default", enc)
	}
	if imp.Name != "imported" || len(imp.Key) != 32 || imp.Type != "" {
		t.Errorf("request %v", &imp)
	}
}

func TestKeygenAndDecrypt(t *testing.T) {
	f := newFakeKMS(t, func(cmd cmds.Command, _ []byte) (int, []byte) {
		switch cmd {
		case cmds.KeyGenerate:
			return http.StatusOK, frame(t, cmd, &pb.GenerateKeyResponse{Version: 3, Plaintext: []byte{1, 2, 3}, Ciphertext: []byte{4, 5, 6}})
		case cmds.KeyDecrypt:
			return http.StatusOK, frame(t, cmd, &pb.DecryptResponse{Plaintext: []byte{1, 2, 3}})
		}
		return http.StatusBadRequest, []byte("unexpected command")
	})

	stdout, stderr, code := f.run("", "keygen", "my-key", "-v", "3", "--length", "3")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if want := "Plaintext   AQID\nCiphertext  v3:BAUG\n"; stdout != want {
		t.Errorf("output\n%s\nwant\n%s", stdout, want)
	}
	var gen pb.GenerateKeyRequest
	f.request(0, cmds.KeyGenerate, &gen)
	if gen.Name != "my-key" || gen.Version != 3 || gen.Length != 3 {
		t.Errorf("request %v", &gen)
	}

	stdout, _, _ = f.run("", "keygen", "my-key", "--json")
	if got := decodeJSON[dataKeyJSON](t, stdout); got != (dataKeyJSON{Version: 3, Plaintext: "AQID", Ciphertext: "v3:BAUG"}) {
		t.Errorf("JSON %+v", got)
	}

	stdout, stderr, code = f.run("", "decrypt", "my-key", "v3:BAUG")
	if code != ExitOK || stdout != "AQID\n" {
		t.Fatalf("exit code %d, output %q: %s", code, stdout, stderr)
	}
	var dec pb.DecryptRequest
	f.request(2, cmds.KeyDecrypt, &dec)
	if dec.Name != "my-key" || dec.Version != 3 || string(dec.Ciphertext) != "\x04\x05\x06" {
		t.Errorf("request %v", &dec)
	}
}

func TestLsKeyPages(t *testing.T) {
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	key := func(name string) *pb.KeyStatusResponse {
		return &pb.KeyStatusResponse{Name: name, Version: 1, Type: "AES256", CreatedAt: pb.Time(created)}
	}
	f := newFakeKMS(t, func(cmd cmds.Command, body []byte) (int, []byte) {
		var req pb.ListRequest
		if _, err := cmds.DecodePB(body, cmds.KeyList, &req); err != nil {
			return http.StatusBadRequest, []byte(err.Error())
		}
		page := &pb.ListKeysResponse{Keys: []*pb.KeyStatusResponse{key("a"), key("b")}, ContinueAt: "c"}
		if req.ContinueAt == "c" {
			page = &pb.ListKeysResponse{Keys: []*pb.KeyStatusResponse{key("c")}}
		}
		return http.StatusOK, frame(t, cmd, page)
	})

	stdout, stderr, code := f.run("", "ls-key", "--json", "-e", "tenant")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	keys := decodeJSON[[]keyJSON](t, stdout)
	if len(keys) != 3 || keys[2].Name != "c" || keys[0].Type != "AES256" || keys[0].CreatedAt != "2025-01-02T03:04:05Z" || keys[1].State != "active" {
		t.Errorf("keys %+v", keys)
	}
	var second pb.ListRequest
	if enc := f.request(1, cmds.KeyList, &second); enc != "tenant" || second.ContinueAt != "c" {
		t.Errorf("second page request %v in enclave %q", &second, enc)
	}

	stdout, _, _ = f.run("", "ls-key")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME  VERSION  TYPE    CREATED") || !strings.HasPrefix(lines[3], "c     1        AES256  ") ||
		!strings.HasSuffix(lines[0], "STATE") || !strings.HasSuffix(lines[3], "active") {
		t.Errorf("table:\n%s", stdout)
	}
}

func TestServerErrors(t *testing.T) {
	tests := []struct {
		status int
		msg    string
		want   string
	}{
		{http.StatusForbidden, "access denied: insufficient permissions", "keep: access denied: insufficient permissions (check MINIO_KMS_API_KEY and the enclave)\n"},
		{http.StatusNotFound, "key does not exist", "keep: key does not exist\n"},
		{http.StatusNotFound, "enclave does not exist", "keep: enclave does not exist (check the enclave name)\n"},
		{http.StatusBadRequest, "invalid ciphertext", "keep: invalid ciphertext (wrong key, key version or ciphertext)\n"},
	}
	for _, tt := range tests {
		f := newFakeKMS(t, func(cmds.Command, []byte) (int, []byte) { return tt.status, []byte(tt.msg) })
		_, stderr, code := f.run("", "keygen", "k")
		if code != ExitError || stderr != tt.want {
			t.Errorf("%d %s: exit code %d, stderr %q; want %q", tt.status, tt.msg, code, stderr, tt.want)
		}
	}
}

func TestAddIdentity(t *testing.T) {
	f := newFakeKMS(t, ok(t, 0))
	stdout, stderr, code := f.run("", "add-identity", "-e", "tenant", "--admin", "--tag", "team=storage")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		label, value, _ := strings.Cut(line, "  ")
		fields[label] = strings.TrimSpace(value)
	}
	key, err := mtls.ParsePrivateKey(fields["API Key"])
	if err != nil || !strings.HasPrefix(fields["API Key"], "k2:") {
		t.Fatalf("no k2 API key in output %q: %v", stdout, err)
	}
	if !strings.Contains(stderr, "shown only once") {
		t.Errorf("no warning to keep the API key: %q", stderr)
	}
	var req pb.CreateIdentityRequest
	if enc := f.request(0, cmds.IdentityCreate, &req); enc != "tenant" {
		t.Errorf("enclave %q", enc)
	}
	if req.Identity != key.Identity().String() || fields["Identity"] != req.Identity ||
		req.Privilege != "Admin" || req.IsServiceAccount || req.Tags["team"] != "storage" {
		t.Errorf("request %v for output %q", &req, stdout)
	}

	const id = "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0"
	if _, stderr, code = f.run("", "add-identity", id, "--service"); code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	f.request(1, cmds.IdentityCreate, &req)
	if req.Identity != id || req.Privilege != "User" || !req.IsServiceAccount {
		t.Errorf("request %v", &req)
	}
}

func TestGetIdentity(t *testing.T) {
	const id = "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0"
	f := newFakeKMS(t, ok(t, cmds.IdentityGet, &pb.IdentityResponse{
		Identity:  id,
		Privilege: uint32(kms.SysAdmin),
		Tags:      map[string]string{"b": "2", "a": "1"},
	}))
	stdout, stderr, code := f.run("", "get-identity")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	var req pb.IdentityRequest
	f.request(0, cmds.IdentityGet, &req)
	if req.Identity != "" {
		t.Errorf("get-identity without argument asked for %q, want the caller (empty)", req.Identity)
	}
	for _, want := range []string{"Identity          " + id, "Privilege         SysAdmin", "Tags              a=1, b=2", "Policy            -"} {
		if !strings.Contains(stdout, want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}

	stdout, _, _ = f.run("", "get-identity", id, "--json")
	if got := decodeJSON[identityJSON](t, stdout); got.Identity != id || got.Privilege != "SysAdmin" {
		t.Errorf("JSON %+v", got)
	}
}

func TestStatEnclaveJSON(t *testing.T) {
	f := newFakeKMS(t, ok(t, cmds.EnclaveStatus, &pb.EnclaveStatusResponse{Name: "a"}, &pb.EnclaveStatusResponse{Name: "b"}))
	stdout, stderr, code := f.run("", "stat-enclave", "a", "b", "--json")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if got := decodeJSON[[]enclaveJSON](t, stdout); len(got) != 2 || got[1].Name != "b" {
		t.Errorf("JSON %+v", got)
	}
}

func TestAddPolicyFromStdin(t *testing.T) {
	f := newFakeKMS(t, ok(t, 0))
	policy := `{"allow": {"KEY:GENERATE": ["my-key*"]}, "deny": {"KEY:DELETE": "*"}}`
	if _, stderr, code := f.run(policy, "add-policy", "p", "-", "-e", "tenant"); code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	var req pb.CreatePolicyRequest
	f.request(0, cmds.PolicyCreate, &req)
	if req.Name != "p" || req.Allow["KEY:GENERATE"].GetRules()["my-key*"] == nil || req.Deny["KEY:DELETE"].GetRules()["*"] == nil {
		t.Errorf("request %v", &req)
	}

	// A bad policy file is reported before anything is sent.
	if _, stderr, code := f.run(`{"allow": {"KEY:FLY": "*"}}`, "add-policy", "p", "-"); code != ExitError || !strings.Contains(stderr, `unknown command "KEY:FLY"`) {
		t.Errorf("exit code %d, stderr %q", code, stderr)
	}
	if n := len(f.bodies); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestGetPolicy(t *testing.T) {
	f := newFakeKMS(t, ok(t, cmds.PolicyGet, &pb.PolicyResponse{
		Name:  "p",
		Allow: map[string]*pb.RuleSet{"KEY:GENERATE": {Rules: map[string]*pb.Rule{"my-key*": {}, "a": {}}}},
		Deny:  map[string]*pb.RuleSet{"KEY:DELETE": {Rules: map[string]*pb.Rule{"*": {}}}},
	}))
	stdout, stderr, code := f.run("", "get-policy", "p", "--json")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	// The JSON is a valid policy file.
	p, err := parsePolicy([]byte(stdout))
	if err != nil {
		t.Fatalf("get-policy --json is not a policy file: %v\n%s", err, stdout)
	}
	if len(p.Allow[cmds.KeyGenerate]) != 2 || len(p.Deny[cmds.KeyDelete]) != 1 {
		t.Errorf("round trip lost rules: %+v", p)
	}
	if !strings.Contains(stdout, `"KEY:GENERATE": [
      "a",
      "my-key*"
    ]`) {
		t.Errorf("unexpected JSON:\n%s", stdout)
	}

	stdout, _, _ = f.run("", "get-policy", "p")
	for _, want := range []string{"allow  KEY:GENERATE  a, my-key*", "deny   KEY:DELETE    *"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}
