package deploy

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/keep-kms/keep/test/aptget"
	"github.com/keep-kms/keep/test/testnode"
)

// envMDWE makes the test binary a wrapper: started with it set to a keep
// binary, it turns on the kernel's memory-deny-write-execute for itself
// and executes keep with its own arguments, which inherits it, as
// MemoryDenyWriteExecute=yes does to keep.service.
const envMDWE = "KEEP_TEST_MDWE_EXEC"

// prSetMDWE and mdweRefuseExecGain are PR_SET_MDWE and
// PR_MDWE_REFUSE_EXEC_GAIN of prctl(2), Linux 6.3 and later.
const (
	prSetMDWE          = 65
	mdweRefuseExecGain = 1
)

func init() {
	bin := os.Getenv(envMDWE)
	if bin == "" {
		return
	}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetMDWE, mdweRefuseExecGain, 0, 0, 0, 0); errno != 0 {
		os.Stderr.WriteString("prctl(PR_SET_MDWE): " + errno.Error() + "\n")
		os.Exit(3)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, envMDWE+"=") {
			env = append(env, e)
		}
	}
	err := syscall.Exec(bin, append([]string{bin}, os.Args[1:]...), env)
	os.Stderr.WriteString("exec " + bin + ": " + err.Error() + "\n")
	os.Exit(3)
}

// mdweSupported reports whether the kernel has PR_SET_MDWE, asking a
// child, since the setting cannot be undone in the test process.
func mdweSupported(t *testing.T) bool {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), envMDWE+"=/bin/true")
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 3 {
		return false
	}
	if err != nil {
		t.Fatalf("probing PR_SET_MDWE: %v", err)
	}
	return true
}

// unitDirectives reads a unit file into its directives, name → values in
// order; comments and sections are dropped.
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not a directive: %q", path, line)
		}
		d[k] = append(d[k], v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestSystemdUnit checks deploy/systemd/keep.service: systemd-analyze
// verify finds nothing to say about it (with ExecStart pointing at the keep
// under test, which verify requires to exist), systemd-analyze security
// rates its exposure at most 2.0 of 10, it has the hardening the issue asks
// for, and the HSM key comes from a credential file, never from the unit's
// environment. Then keep runs as the unit runs it: with the sample config,
// its HSM key read from a credentials directory through
// MINIO_KMS_HSM_KEY_FILE, under the kernel's memory-deny-write-execute
// (what MemoryDenyWriteExecute=yes asks for), and serves.
func TestSystemdUnit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("systemd units are Linux's")
	}
	aptget.Need(t, "systemd-analyze", "systemd")
	unit := repoFile(t, "deploy/systemd/keep.service")
	bin := testnode.Binary(t)

	d := unitDirectives(t, unit)
	for _, want := range []struct{ key, value string }{
		{"User", "keep"},
		{"StateDirectory", "keep"},
		{"ProtectSystem", "strict"},
		{"NoNewPrivileges", "yes"},
		{"MemoryDenyWriteExecute", "yes"},
		{"LimitNOFILE", "65536"},
		{"Restart", "on-failure"},
		{"LoadCredential", "hsm-key:/etc/keep/credentials/hsm-key"},
		{"Environment", "MINIO_KMS_HSM_KEY_FILE=%d/hsm-key"},
		{"CapabilityBoundingSet", ""},
	} {
		found := false
		for _, v := range d[want.key] {
			found = found || v == want.value
		}
		if !found {
			t.Errorf("keep.service: no %s=%s (has %q)", want.key, want.value, d[want.key])
		}
	}
	for _, env := range d["Environment"] {
		if strings.Contains(env, "MINIO_KMS_HSM_KEY=") || strings.Contains(env, "KEEP_PKCS11_PIN=") || strings.Contains(env, "hsm:aes256:") {
			t.Errorf("keep.service puts a secret into the environment: Environment=%s", env)
		}
	}
	exec0 := d["ExecStart"]
	if len(exec0) != 1 || !strings.HasPrefix(exec0[0], "/usr/local/bin/keep server /var/lib/keep --config /etc/keep/keep.yaml") {
		t.Fatalf("keep.service: ExecStart=%q", exec0)
	}

	// verify wants the binary of ExecStart to exist: a copy of the unit
	// runs the keep under test. The copy keeps the name, which %d and
	// the credentials directory derive from.
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "keep.service")
	if err := os.WriteFile(tmp, []byte(strings.ReplaceAll(string(text), "ExecStart=/usr/local/bin/keep ", "ExecStart="+bin+" ")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", tmp).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify keep.service: %v\n%s", err, out)
	}

	out, err = exec.Command("systemd-analyze", "security", "--offline=yes", "--threshold=20", tmp).CombinedOutput()
	score := regexp.MustCompile(`Overall exposure level for keep.service: ([0-9.]+ \S+)`).FindSubmatch(out)
	switch {
	case score == nil && strings.Contains(string(out), "--offline"):
		t.Logf("systemd-analyze security --offline is not supported here (systemd < 250): %s", testnode.Tail(string(out), 512))
	case score == nil:
		t.Errorf("systemd-analyze security keep.service: no exposure level: %v\n%s", err, out)
	case err != nil:
		t.Errorf("systemd-analyze security keep.service: exposure %s, more than 2.0: %v\n%s", score[1], err, out)
	default:
		t.Logf("systemd-analyze security: exposure %s", score[1])
	}

	t.Run("as the unit runs keep", func(t *testing.T) {
		runAsUnit(t, bin)
	})
}

// runAsUnit starts keep as keep.service does, with deploy/systemd/keep.yaml
// (its paths moved into a temporary directory) and the HSM key in a
// credentials directory, under memory-deny-write-execute, and checks that it
// unseals with that key and serves.
func runAsUnit(t *testing.T, bin string) {
	dir := t.TempDir()
	addr := testnode.AllocAddr(t)
	ca := testnode.NewCA(t, "keep test CA")
	leaf := ca.Issue(t, testnode.IPOf(addr), 0)
	for name, content := range map[string][]byte{"private.key": leaf.KeyPEM, "public.crt": leaf.CertPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sample, err := os.ReadFile(repoFile(t, "deploy/systemd/keep.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("/etc/keep/", dir+"/", "/var/log/keep/", dir+"/").Replace(string(sample))
	if conf == string(sample) {
		t.Fatal("keep.yaml names neither /etc/keep/ nor /var/log/keep/")
	}
	confFile := filepath.Join(dir, "keep.yaml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	// What LoadCredential=hsm-key:… leaves in $CREDENTIALS_DIRECTORY.
	creds := filepath.Join(dir, "credentials")
	hsmKey := testnode.NewHSMKey(t)
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "hsm-key"), []byte(hsmKey+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}

	opts := testnode.Options{
		Addr:     addr,
		HSMKey:   "-", // not in the environment: only in the credential
		Config:   confFile,
		ExtraEnv: []string{"MINIO_KMS_HSM_KEY_FILE=" + filepath.Join(creds, "hsm-key")},
	}
	if mdweSupported(t) {
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		opts.Binary = self
		opts.ExtraEnv = append(opts.ExtraEnv, envMDWE+"="+bin)
	} else {
		t.Log("the kernel has no PR_SET_MDWE (Linux < 6.3): keep runs without memory-deny-write-execute")
	}
	n := testnode.Start(t, opts)
	want, err := testnode.HSMRootAPIKey(hsmKey)
	if err != nil {
		t.Fatal(err)
	}
	if n.APIKey != want {
		t.Fatalf("banner API key %s, want %s, the credential's HSM key's", n.APIKey, want)
	}

	// The node serves the sample config's certificate: keep health
	// verifies it with the CA, as clients of a production node do.
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(testnode.BaseEnv(t.TempDir()), "SSL_CERT_FILE="+caFile)
	if r := testnode.Run(t, env, "health", "--ready", "--write", addr); r.Code != 0 || !strings.Contains(r.Stdout, "ready for writes") {
		t.Fatalf("keep health with the CA: %s", r)
	}
	// It seals and unseals under memory-deny-write-execute, and audits
	// into the sample config's sink.
	for _, args := range [][]string{{"add-key", "k", "-k"}, {"keygen", "k", "-k"}} {
		if r := testnode.CLI(t, []string{n.Endpoint()}, n.APIKey, args...); r.Code != 0 {
			t.Fatalf("%s", r)
		}
	}
	n.Stop()
	if audit, err := os.ReadFile(filepath.Join(dir, "audit.log")); err != nil || !strings.Contains(string(audit), `"command":"KEY:GENERATE"`) {
		t.Fatalf("audit log (%v):\n%s", err, audit)
	}
}
