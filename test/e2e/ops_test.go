package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/keep-kms/keep/test/promrules"
	"github.com/keep-kms/keep/test/testnode"
)

// ---------------------------------------------------------------------------
// Helpers for monitoring and settings

// metricsURL is the metrics endpoint of a node.
func metricsURL(n *testnode.Node) string { return "https://" + n.Addr + "/v1/health/metrics" }

// scrape reads the metrics of n with hc and returns the status and, for a
// 200, the parsed metric families.
func scrape(t *testing.T, hc *http.Client, n *testnode.Node) (int, map[string]*dto.MetricFamily) {
	t.Helper()
	r := do(t, hc, http.MethodGet, metricsURL(n), nil, nil)
	if r.Status != http.StatusOK {
		return r.Status, nil
	}
	checkLength(t, "GET /v1/health/metrics", r)
	var p expfmt.TextParser
	families, err := p.TextToMetricFamilies(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("parse metrics of %s: %v\n%s", n.Addr, err, r.Body)
	}
	return r.Status, families
}

// mustScrape is scrape that fails the test unless the scrape succeeds.
func mustScrape(t *testing.T, hc *http.Client, n *testnode.Node) map[string]*dto.MetricFamily {
	t.Helper()
	status, families := scrape(t, hc, n)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/health/metrics of %s: status %d", n.Addr, status)
	}
	return families
}

// sample returns the value of the sample of family name whose labels
// include the given name/value pairs (a histogram's sample count), and
// whether there is one.
func sample(families map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	return promrules.Value(families, name, want)
}

// value is sample's value, 0 if there is none.
func value(families map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	v, _ := sample(families, name, labels...)
	return v
}

// cliEnv is the environment of a keep client command talking to n as root.
func cliEnv(n *testnode.Node) []string {
	return []string{"MINIO_KMS_SERVER=https://" + n.Addr, "MINIO_KMS_API_KEY=" + n.APIKey}
}

// nodeConfig is the reply of GET /v1/config.
type nodeConfig struct {
	Node      map[string]any    `json:"node"`
	Cluster   map[string]string `json:"cluster"`
	Effective map[string]string `json:"effective"`
}

// getConfig reads GET /v1/config of n as root.
func getConfig(t *testing.T, n *testnode.Node) nodeConfig {
	t.Helper()
	r := do(t, testnode.HTTPClientProto(t, n.Root, true, time.Minute), http.MethodGet, "https://"+n.Addr+"/v1/config", nil, map[string]string{"Accept": "application/json"})
	if r.Status != http.StatusOK {
		t.Fatalf("GET /v1/config of %s: %d %s", n.Addr, r.Status, r.Body)
	}
	var c nodeConfig
	if err := json.Unmarshal(r.Body, &c); err != nil {
		t.Fatalf("GET /v1/config of %s: %v: %s", n.Addr, err, r.Body)
	}
	return c
}

// waitFor polls cond every 100 ms until it holds or timeout passes, and
// reports whether it held.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeConfigFile writes a node config file into a new directory.
func writeConfigFile(t testing.TB, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keep.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// cliProcess is a keep client command running in the background.
type cliProcess struct {
	cmd            *exec.Cmd
	stdout, stderr *syncWriter
	done           chan error
}

// startCLI starts keep with args; it is killed when the test ends.
func startCLI(t *testing.T, env []string, args ...string) *cliProcess {
	t.Helper()
	p := &cliProcess{
		cmd:    exec.Command(testnode.Binary(t), args...),
		stdout: &syncWriter{w: new(bytes.Buffer)},
		stderr: &syncWriter{w: new(bytes.Buffer)},
		done:   make(chan error, 1),
	}
	p.cmd.Env = append(testnode.BaseEnv(t.TempDir()), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	return p
}

// interrupt sends SIGINT, as Ctrl-C does, and returns the exit code.
func (p *cliProcess) interrupt(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-p.done:
		p.done <- err
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(20 * time.Second):
		t.Fatalf("keep %s: still running 20s after SIGINT", strings.Join(p.cmd.Args[1:], " "))
		return -1
	}
}

// ---------------------------------------------------------------------------
// Tests

// TestMetrics scrapes /v1/health/metrics, checks that the families move
// with the requests made, and that metrics.auth decides who may scrape.
func TestMetrics(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	ctx := ctxT(t)
	c := n.RootClient(t)
	root, anon := testnode.HTTPClientProto(t, n.Root, true, time.Minute), testnode.HTTPClientProto(t, nil, true, time.Minute)
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "metrics"}), "CreateKey")

	before := mustScrape(t, root, n)
	for _, name := range []string{
		"keep_http_requests_total", "keep_http_requests_in_flight", "keep_http_request_duration_seconds",
		"keep_http_request_size_bytes", "keep_http_response_size_bytes", "keep_commands_total",
		"keep_raft_role", "keep_raft_term", "keep_raft_commit_index", "keep_raft_applied_index",
		"keep_raft_last_contact_seconds", "keep_tls_certificate_expiry_seconds", "keep_tls_certificate_expiring",
		"keep_build_info", "process_cpu_seconds_total", "process_resident_memory_bytes", "go_goroutines",
	} {
		if before[name] == nil {
			t.Errorf("no metric %s", name)
		}
	}
	if v := value(before, "keep_http_requests_in_flight", "api", "minkms"); v < 1 {
		t.Errorf("keep_http_requests_in_flight{api=minkms} = %v during a scrape, want >= 1", v)
	}
	if v := value(before, "keep_raft_role", "role", "leader"); v != 1 {
		t.Errorf("keep_raft_role{role=leader} = %v on a one-node cluster, want 1", v)
	}
	if v := value(before, "keep_tls_certificate_expiry_seconds", "cert", "self-signed"); v < 364*24*3600 || v > 366*24*3600 {
		t.Errorf("keep_tls_certificate_expiry_seconds{cert=self-signed} = %v, want about a year", v)
	}

	// 5 generates, 1 generate of a missing key, 1 decrypt of garbage,
	// and a write.
	for range 5 {
		_, err := c.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "metrics", Length: 32})
		noErr(t, err, "GenerateKey")
	}
	_, err := c.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "missing", Length: 32})
	errStatus(t, err, http.StatusNotFound, "GenerateKey of a missing key")
	_, err = c.Decrypt(ctx, "", &kms.DecryptRequest{Name: "metrics", Ciphertext: randBytes(t, 64)})
	errStatus(t, err, http.StatusBadRequest, "Decrypt of garbage")
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "metrics-2"}), "CreateKey")

	after := mustScrape(t, root, n)
	for _, tc := range []struct {
		name   string
		labels []string
		min    float64 // at least this much more than before
		exact  bool    // exactly min more
	}{
		{"keep_commands_total", []string{"command", "KEY:GENERATE", "outcome", "ok"}, 5, true},
		{"keep_commands_total", []string{"command", "KEY:GENERATE", "outcome", "client_error"}, 1, true},
		{"keep_commands_total", []string{"command", "KEY:DECRYPT", "outcome", "client_error"}, 1, true},
		{"keep_commands_total", []string{"command", "KEY:CREATE", "outcome", "ok"}, 1, true},
		{"keep_http_requests_total", []string{"api", "minkms", "code", "200"}, 7, false}, // 5 generates, a write, the scrape before
		{"keep_http_requests_total", []string{"api", "minkms", "code", "404"}, 1, true},
		{"keep_http_requests_total", []string{"api", "minkms", "code", "400"}, 1, true},
		{"keep_http_request_duration_seconds", []string{"api", "minkms"}, 9, false},
		{"keep_http_request_size_bytes", []string{"api", "minkms"}, 9, false},
		{"keep_http_response_size_bytes", []string{"api", "minkms"}, 9, false},
		{"keep_raft_commit_index", nil, 1, false},
		{"keep_raft_applied_index", nil, 1, false},
	} {
		got := value(after, tc.name, tc.labels...) - value(before, tc.name, tc.labels...)
		if got < tc.min || tc.exact && got != tc.min {
			t.Errorf("%s%v grew by %v, want %s%v", tc.name, tc.labels, got, map[bool]string{true: "", false: ">= "}[tc.exact], tc.min)
		}
	}
	sum := func(f map[string]*dto.MetricFamily, name string) float64 {
		for _, m := range f[name].GetMetric() {
			for _, l := range m.Label {
				if l.GetName() == "api" && l.GetValue() == "minkms" {
					return m.GetHistogram().GetSampleSum()
				}
			}
		}
		return 0
	}
	if sum(after, "keep_http_response_size_bytes") <= sum(before, "keep_http_response_size_bytes") {
		t.Errorf("keep_http_response_size_bytes_sum did not grow")
	}

	// OpenMetrics on request, with an explicit length and uncompressed.
	r := do(t, root, http.MethodGet, metricsURL(n), nil, map[string]string{"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"})
	checkLength(t, "GET /v1/health/metrics (OpenMetrics)", r)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") || !bytes.HasSuffix(r.Body, []byte("# EOF\n")) {
		t.Errorf("OpenMetrics scrape: Content-Type %q, body ends %q", ct, r.Body[max(0, len(r.Body)-20):])
	}

	// metrics.auth: sysadmin (the default) refuses clients without a
	// certificate and identities without SysAdmin; public lets anyone in.
	user := testnode.NewAPIKey(t)
	noErr(t, c.CreateIdentity(ctx, "", &kms.CreateIdentityRequest{Identity: user.Identity(), Privilege: kms.Admin}), "CreateIdentity")
	if status, _ := scrape(t, anon, n); status != http.StatusForbidden {
		t.Errorf("scrape without certificate, metrics.auth=sysadmin: status %d, want 403", status)
	}
	if status, _ := scrape(t, testnode.HTTPClientProto(t, user, true, time.Minute), n); status != http.StatusForbidden {
		t.Errorf("scrape by an Admin, metrics.auth=sysadmin: status %d, want 403", status)
	}
	cliOK(t, cliEnv(n), "config", "set", "-k", "metrics.auth=public")
	if status, f := scrape(t, anon, n); status != http.StatusOK || f["keep_http_requests_total"] == nil {
		t.Errorf("scrape without certificate, metrics.auth=public: status %d", status)
	}
	cliOK(t, cliEnv(n), "config", "set", "-k", "metrics.auth=sysadmin")
	if status, _ := scrape(t, anon, n); status != http.StatusForbidden {
		t.Errorf("scrape without certificate, metrics.auth back to sysadmin: status %d, want 403", status)
	}
}

// TestClusterSettings changes settings with keep config set through one
// node of a two-node cluster and checks that both nodes follow them.
func TestClusterSettings(t *testing.T) {
	t.Parallel()
	hsmKey := testnode.NewHSMKey(t)
	n1 := testnode.Start(t, testnode.Options{HSMKey: hsmKey})
	n2 := testnode.Start(t, testnode.Options{HSMKey: hsmKey})
	ctx := ctxT(t)
	c1, c2 := n1.RootClient(t), n2.RootClient(t)
	noErr(t, c1.AddNode(ctx, &kms.AddClusterNodeRequest{Host: n2.Addr}), "AddNode")
	noErr(t, c1.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "settings"}), "CreateKey")
	if !waitFor(10*time.Second, func() bool {
		_, err := c2.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "settings"})
		return err == nil
	}) {
		t.Fatal("the key created on node 1 is not on node 2 within 10s")
	}

	// Node 2 logs no debug lines at the default level.
	debugLine := `"level":"DEBUG","msg":"request"`
	do(t, testnode.HTTPClientProto(t, nil, true, time.Minute), http.MethodGet, "https://"+n2.Addr+"/version", nil, nil)
	time.Sleep(200 * time.Millisecond)
	if strings.Contains(n2.Stderr(), debugLine) {
		t.Fatalf("node 2 logs requests at debug level before log.level=debug")
	}

	out := cliOK(t, cliEnv(n1), "config", "set", "-k", "log.level=debug")
	if !strings.Contains(out, "log.level") || !strings.Contains(out, "cluster") {
		t.Errorf("keep config set: %q, want the settings table", out)
	}
	for _, n := range []*testnode.Node{n1, n2} {
		if !waitFor(5*time.Second, func() bool { return getConfig(t, n).Effective["log.level"] == "debug" }) {
			t.Errorf("%s: effective log.level %q, want debug", n.Addr, getConfig(t, n).Effective["log.level"])
		}
	}
	if !waitFor(5*time.Second, func() bool {
		do(t, testnode.HTTPClientProto(t, nil, true, time.Minute), http.MethodGet, "https://"+n2.Addr+"/version", nil, nil)
		return strings.Contains(n2.Stderr(), debugLine)
	}) {
		t.Errorf("node 2 logs no request at debug level after log.level=debug; stderr:\n%s", n2.Stderr())
	}
	var view nodeConfig
	cliJSON(t, cliEnv(n2), &view, "config", "get", "-k")
	if view.Cluster["log.level"] != "debug" || view.Effective["log.level"] != "debug" {
		t.Errorf("keep config get --json on node 2: cluster %v, effective %v", view.Cluster, view.Effective)
	}

	// cluster.max_staleness: node 2, cut off from the leader, serves reads
	// for as long as the setting says, then refuses them.
	cliOK(t, cliEnv(n1), "config", "set", "-k", "cluster.max_staleness=2s")
	for _, n := range []*testnode.Node{n1, n2} {
		if !waitFor(5*time.Second, func() bool { return getConfig(t, n).Effective["cluster.max_staleness"] == "2s" }) {
			t.Errorf("%s: effective cluster.max_staleness %q, want 2s", n.Addr, getConfig(t, n).Effective["cluster.max_staleness"])
		}
	}
	n1.Kill()
	_, err := c2.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "settings"})
	noErr(t, err, "KeyStatus on node 2 right after the leader died")
	if !waitFor(10*time.Second, func() bool {
		_, err := c2.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "settings"})
		var e kms.Error
		return errors.As(err, &e) && e.Code == http.StatusServiceUnavailable
	}) {
		t.Errorf("node 2 still serves reads 10s after losing its leader with cluster.max_staleness=2s")
	}
}

// TestCertificateRotation replaces the certificate files of a running node
// and checks that new connections get the new certificate, without a
// restart, and that expiry shows in the log and the metrics.
func TestCertificateRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := testnode.AllocAddr(t)
	host, _, _ := net.SplitHostPort(addr)
	ca := testnode.NewCA(t, "Keep rotation CA")
	soon := ca.Issue(t, host, 0) // valid for 24 hours: expires within 48
	keyFile, certFile := filepath.Join(dir, "private.key"), filepath.Join(dir, "public.crt")
	writeFile(t, keyFile, soon.KeyPEM)
	writeFile(t, certFile, soon.CertPEM)
	cfg := writeConfigFile(t, fmt.Sprintf("version: v1\ntls:\n  certs:\n    - key: %s\n      cert: %s\n", keyFile, certFile))
	n := testnode.Start(t, testnode.Options{Addr: addr, Config: cfg})
	pid := n.PID()
	root := testnode.HTTPClientProto(t, n.Root, true, time.Minute)

	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", n.Addr, &tls.Config{RootCAs: ca.Pool(), ServerName: host})
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	if !bytes.Equal(served().Raw, soon.Cert.Raw) {
		t.Fatal("the node does not serve the configured certificate")
	}
	f := mustScrape(t, root, n)
	if v := value(f, "keep_tls_certificate_expiring", "cert", certFile); v != 1 {
		t.Errorf("keep_tls_certificate_expiring{cert=%s} = %v for a certificate valid 24h, want 1", certFile, v)
	}
	if !waitFor(5*time.Second, func() bool { return strings.Contains(n.Stderr(), "TLS certificate expires soon") }) {
		t.Errorf("no warning of the certificate expiring within 48 hours; stderr:\n%s", n.Stderr())
	}

	// Rotate: a certificate valid for 90 days, files replaced one by one.
	later := ca.Issue(t, host, 90*24*time.Hour)
	replaceFile(t, certFile, later.CertPEM)
	replaceFile(t, keyFile, later.KeyPEM)
	if !waitFor(30*time.Second, func() bool { return bytes.Equal(served().Raw, later.Cert.Raw) }) {
		t.Fatalf("new connections do not get the new certificate 30s after rotation; stderr:\n%s", n.Stderr())
	}
	if n.PID() != pid { // PID is 0 once the process has exited
		t.Errorf("the node restarted to rotate its certificate")
	}
	f = mustScrape(t, root, n)
	if v := value(f, "keep_tls_certificate_expiring", "cert", certFile); v != 0 {
		t.Errorf("keep_tls_certificate_expiring = %v after rotation to a 90-day certificate, want 0", v)
	}
	if v := value(f, "keep_tls_certificate_expiry_seconds", "cert", certFile); v < 89*24*3600 {
		t.Errorf("keep_tls_certificate_expiry_seconds = %v after rotation, want about 90 days", v)
	}
	if !strings.Contains(n.Stderr(), "TLS certificate reloaded") {
		t.Errorf("the reload is not logged")
	}
}

// replaceFile replaces path by a new file, as deployment tools do.
func replaceFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	writeFile(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestLogsCLI streams the audit log and the server log with keep logs and
// ends them with Ctrl-C.
func TestLogsCLI(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	ctx := ctxT(t)
	c := n.RootClient(t)
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "logs"}), "CreateKey")
	env := cliEnv(n)
	cliOK(t, env, "config", "set", "-k", "log.level=debug")

	audit := startCLI(t, env, "logs", "--audit", "-k")
	server := startCLI(t, env, "logs", "--json", "-k", n.Addr)
	// The streams start when the server has answered; generate until the
	// audit stream shows one.
	if !waitFor(15*time.Second, func() bool {
		_, err := c.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "logs", Length: 32})
		noErr(t, err, "GenerateKey")
		return strings.Contains(audit.stdout.String(), "KEY:GENERATE")
	}) {
		t.Fatalf("keep logs --audit shows no KEY:GENERATE; stdout %q, stderr %q", audit.stdout.String(), audit.stderr.String())
	}
	for _, line := range strings.Split(audit.stdout.String(), "\n") {
		if strings.Contains(line, "KEY:GENERATE") {
			for _, want := range []string{"minkms", n.Root.Identity().String(), "logs", "200"} {
				if !strings.Contains(line, want) {
					t.Errorf("keep logs --audit line %q does not show %q", line, want)
				}
			}
			break
		}
	}
	if !waitFor(15*time.Second, func() bool {
		_, err := c.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "logs"})
		noErr(t, err, "KeyStatus")
		for _, line := range strings.Split(server.stdout.String(), "\n") {
			var rec struct{ Level, Message, Path string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "DEBUG" && strings.Contains(rec.Message, "msg=request") && rec.Path == "/v1/kms" {
				return true
			}
		}
		return false
	}) {
		t.Errorf("keep logs --json shows no debug record of a /v1/kms request; stdout %q, stderr %q", server.stdout.String(), server.stderr.String())
	}
	for _, p := range []*cliProcess{audit, server} {
		if code := p.interrupt(t); code != 0 || p.stderr.String() != "" {
			t.Errorf("keep %s: exit %d after Ctrl-C, stderr %q; want 0 and nothing", strings.Join(p.cmd.Args[1:], " "), code, p.stderr.String())
		}
	}
}

// TestPprofCLI profiles a node with keep pprof, for a duration and until
// Ctrl-C.
func TestPprofCLI(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	env := cliEnv(n)
	dir := t.TempDir()

	file := filepath.Join(dir, "fixed.tar")
	out := cliOK(t, env, "pprof", "-k", n.Addr, "--cpu", "--heap", "--goroutine", "--block", "1000", "--duration", "1s", "-o", file)
	checkProfiles(t, file, "cpu.pprof", "heap.pprof", "goroutine.pprof", "block.pprof")
	if !strings.Contains(out, file) {
		t.Errorf("keep pprof: %q does not name the file", out)
	}

	file = filepath.Join(dir, "interrupted.tar")
	p := startCLI(t, env, "pprof", "-k", n.Addr, "--duration", "10m", "-o", file)
	if !waitFor(15*time.Second, func() bool { return strings.Contains(p.stderr.String(), "Profiling") }) {
		t.Fatalf("keep pprof did not start profiling; stderr %q", p.stderr.String())
	}
	if code := p.interrupt(t); code != 0 {
		t.Fatalf("keep pprof: exit %d after Ctrl-C, want 0; stderr %q", code, p.stderr.String())
	}
	checkProfiles(t, file, "cpu.pprof", "heap.pprof") // the default

	// The node can be profiled again: the interrupted run stopped it.
	cliOK(t, env, "pprof", "-k", n.Addr, "--heap", "--duration", "100ms", "-o", filepath.Join(dir, "again.tar"))
}

// checkProfiles checks that file is a TAR of exactly the named pprof
// files, each gzip-compressed as pprof writes them.
func checkProfiles(t *testing.T, file string, names ...string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := tar.NewReader(f)
	var got []string
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		data, err := io.ReadAll(r)
		if err != nil || len(data) < 2 || data[0] != 0x1f || data[1] != 0x8b {
			t.Errorf("%s: %s is not a gzip-compressed pprof profile", file, h.Name)
		}
		got = append(got, h.Name)
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", file, got, names)
	}
}
