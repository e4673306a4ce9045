package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/testnode"
)

// hashDir returns the SHA-256 of every regular file under dir, by relative
// path, and the set of directories.
func hashDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			sums[rel+"/"] = "dir"
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sums[rel] = fmt.Sprintf("%x mode=%v", sha256.Sum256(b), info.Mode())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// TestRestartPersistence creates state of every kind, stops the node with
// SIGTERM and checks that all of it is back after a restart.
func TestRestartPersistence(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	n.DeleteAtOnce(t)
	c := n.RootClient(t)
	ctx := ctxT(t)

	user := testnode.NewAPIKey(t)
	admin := testnode.NewAPIKey(t)
	noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "persist"}), "CreateEnclave")
	noErr(t, c.CreateKey(ctx, "persist", &kms.CreateKeyRequest{Name: "aes", Type: kms.AES256}), "CreateKey aes")
	noErr(t, c.CreateKey(ctx, "persist", &kms.CreateKeyRequest{Name: "chacha", Type: kms.ChaCha20}), "CreateKey chacha")
	material := randBytes(t, 32)
	noErr(t, c.ImportKey(ctx, "persist", &kms.ImportKeyRequest{Name: "imported", Type: kms.AES256, Key: material}), "ImportKey")
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "in-default"}), "CreateKey in default")
	var deks []*kms.GenerateKeyResponse
	var dekKeys []string
	for _, k := range []string{"aes", "chacha", "imported"} {
		g, err := c.GenerateKey(ctx, "persist", &kms.GenerateKeyRequest{Name: k, AssociatedData: []byte(k)})
		noErr(t, err, "GenerateKey "+k)
		deks, dekKeys = append(deks, g[0]), append(dekKeys, k)
	}
	noErr(t, c.CreateKey(ctx, "persist", &kms.CreateKeyRequest{Name: "aes", AddVersion: true}), "rotate aes")
	g, err := c.GenerateKey(ctx, "persist", &kms.GenerateKeyRequest{Name: "aes", AssociatedData: []byte("aes")})
	noErr(t, err, "GenerateKey aes v2")
	deks, dekKeys = append(deks, g[0]), append(dekKeys, "aes")
	noErr(t, c.CreateKey(ctx, "persist", &kms.CreateKeyRequest{Name: "aes", AddVersion: true}), "rotate aes again")
	noErr(t, c.DeleteKey(ctx, "persist", &kms.DeleteKeyRequest{Name: "aes", Version: 3}), "delete aes v3")
	policy := &kms.CreatePolicyRequest{
		Name:  "gen",
		Allow: map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: {"aes": {}}, cmds.KeyDecrypt: {"*": {}}},
		Deny:  map[cmds.Command]kms.RuleSet{cmds.KeyDecrypt: {"chacha": {}}},
	}
	noErr(t, c.CreatePolicy(ctx, "persist", policy), "CreatePolicy")
	tags := map[string]string{"app": "minio"}
	noErr(t, c.CreateIdentity(ctx, "persist", &kms.CreateIdentityRequest{Identity: user.Identity(), Privilege: kms.User, Tags: tags}), "CreateIdentity user")
	noErr(t, c.AssignPolicy(ctx, "persist", &kms.AssignPolicyRequest{Identity: user.Identity(), Policy: "gen"}), "AssignPolicy")
	noErr(t, c.CreateIdentity(ctx, "persist", &kms.CreateIdentityRequest{Identity: admin.Identity(), Privilege: kms.Admin}), "CreateIdentity admin")
	noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "gone"}), "CreateEnclave gone")
	noErr(t, c.DeleteEnclave(ctx, &kms.DeleteEnclaveRequest{Name: "gone"}), "DeleteEnclave gone")
	keysBefore := listAllKeys(t, ctx, c, "persist", "", 0)

	for round := 1; round <= 2; round++ {
		n.Restart()
		if code := n.ExitCode(); code != 0 {
			t.Errorf("restart %d: keep server exited with %d after SIGTERM, want 0", round, code)
		}
		c = n.RootClient(t)

		_, err := c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "persist"})
		noErr(t, err, "EnclaveStatus persist after restart")
		_, err = c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "gone"})
		errIs(t, err, kms.ErrEnclaveNotFound, "deleted enclave after restart")
		_, err = c.EnclaveStatus(ctx, &kms.EnclaveStatusRequest{Name: "default"})
		noErr(t, err, "EnclaveStatus default after restart")
		_, err = c.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "in-default"})
		noErr(t, err, "KeyStatus in-default after restart")

		keysAfter := listAllKeys(t, ctx, c, "persist", "", 0)
		if len(keysAfter) != len(keysBefore) {
			t.Fatalf("keys after restart: %v, before: %v", keyNames(keysAfter), keyNames(keysBefore))
		}
		for i := range keysAfter {
			a, b := keysAfter[i], keysBefore[i]
			if a.Name != b.Name || a.Version != b.Version || a.Type != b.Type || !a.CreatedAt.Equal(b.CreatedAt) || a.CreatedBy != b.CreatedBy {
				t.Errorf("key after restart %+v, before %+v", a, b)
			}
		}
		st, err := c.KeyStatus(ctx, "persist", &kms.KeyStatusRequest{Name: "aes"})
		noErr(t, err, "KeyStatus aes")
		if st[0].Version != 2 {
			t.Errorf("aes after restart: latest version %d, want 2 (v3 was deleted)", st[0].Version)
		}
		_, err = c.KeyStatus(ctx, "persist", &kms.KeyStatusRequest{Name: "aes", Version: 3})
		errIs(t, err, kms.ErrKeyNotFound, "deleted version after restart")

		var reqs []*kms.DecryptRequest
		for i, d := range deks {
			reqs = append(reqs, &kms.DecryptRequest{Name: dekKeys[i], Ciphertext: d.Ciphertext, AssociatedData: []byte(dekKeys[i])})
		}
		ds, err := c.Decrypt(ctx, "persist", reqs...)
		noErr(t, err, "Decrypt old DEKs after restart")
		for i := range ds {
			if !bytes.Equal(ds[i].Plaintext, deks[i].Plaintext) {
				t.Errorf("DEK %d (%s) after restart: plaintext differs", i, dekKeys[i])
			}
		}

		ps, err := c.GetPolicy(ctx, "persist", &kms.PolicyRequest{Name: "gen"})
		noErr(t, err, "GetPolicy after restart")
		if !equalRules(ps[0].Allow, policy.Allow) || !equalRules(ps[0].Deny, policy.Deny) {
			t.Errorf("policy after restart: allow %v deny %v", ps[0].Allow, ps[0].Deny)
		}
		ids, err := c.GetIdentity(ctx, "persist", &kms.IdentityRequest{Identity: user.Identity()}, &kms.IdentityRequest{Identity: admin.Identity()})
		noErr(t, err, "GetIdentity after restart")
		if ids[0].Privilege != kms.User || ids[0].Policy != "gen" || !maps.Equal(ids[0].Tags, tags) || ids[1].Privilege != kms.Admin {
			t.Errorf("identities after restart: %+v %+v", ids[0], ids[1])
		}

		// The identities still work, with their privileges.
		uc := n.Client(t, user)
		_, err = uc.GenerateKey(ctx, "persist", &kms.GenerateKeyRequest{Name: "aes"})
		noErr(t, err, "user generates with aes after restart")
		_, err = uc.GenerateKey(ctx, "persist", &kms.GenerateKeyRequest{Name: "chacha"})
		errIs(t, err, kms.ErrPermission, "user generates with chacha after restart")
		_, err = uc.Decrypt(ctx, "persist", &kms.DecryptRequest{Name: "chacha", Ciphertext: deks[1].Ciphertext, AssociatedData: []byte("chacha")})
		errIs(t, err, kms.ErrPermission, "user decrypts with denied chacha after restart")
		noErr(t, n.Client(t, admin).CreateKey(ctx, "persist", &kms.CreateKeyRequest{Name: fmt.Sprintf("by-admin-%d", round)}), "admin creates key after restart")
		listAllKeys(t, ctx, c, "persist", "", 0) // lists with the new key; keysBefore is taken after the rotation below

		// Rotation continues from the right version.
		noErr(t, c.CreateKey(ctx, "persist", &kms.CreateKeyRequest{Name: "chacha", AddVersion: true}), "rotate chacha after restart")
		st, err = c.KeyStatus(ctx, "persist", &kms.KeyStatusRequest{Name: "chacha"})
		noErr(t, err, "KeyStatus chacha")
		if st[0].Version != round+1 {
			t.Errorf("chacha after restart %d and rotation: version %d, want %d", round, st[0].Version, round+1)
		}
		keysBefore = listAllKeys(t, ctx, c, "persist", "", 0)
	}
}

// TestWrongHSMKey starts a node on a directory sealed by another HSM key: it
// must fail with the documented message and leave the directory alone.
func TestWrongHSMKey(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	ctx := ctxT(t)
	c := n.RootClient(t)
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "k"}), "CreateKey")
	g, err := c.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "k"})
	noErr(t, err, "GenerateKey")
	n.Stop()

	before := hashDir(t, n.Dir)
	if _, ok := before["kms.db"]; !ok {
		t.Errorf("no kms.db in the data directory: %v", slices.Sorted(maps.Keys(before)))
	}
	env := append(testnode.BaseEnv(t.TempDir()), "MINIO_KMS_HSM_KEY="+testnode.NewHSMKey(t))
	r := testnode.Run(t, env, "server", n.Dir, "--address", n.Addr, "--host", n.Addr)
	if r.Code == 0 {
		t.Errorf("keep server with another HSM key: exit code 0, want non-zero")
	}
	for _, want := range []string{
		"failed to unseal root encryption key with HSM: none of this node's HSMs unseals the root encryption key (invalid ciphertext)",
		"HSM hsm:aes256 holds another key than the one that sealed it",
	} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("keep server with another HSM key: stderr %q, want it to contain %q", r.Stderr, want)
		}
	}
	if n := strings.Count(strings.TrimSpace(r.Stderr), "\n"); n > 0 {
		t.Errorf("keep server with another HSM key: %d lines on stderr, want one: %q", n+1, r.Stderr)
	}
	if strings.Contains(r.Stdout, testnode.ReadyLine) {
		t.Errorf("keep server with another HSM key printed %q", testnode.ReadyLine)
	}
	after := hashDir(t, n.Dir)
	if !maps.Equal(before, after) {
		for _, k := range slices.Sorted(maps.Keys(after)) {
			if before[k] != after[k] {
				t.Errorf("data directory changed by the failed start: %s: %q → %q", k, before[k], after[k])
			}
		}
		for k := range before {
			if _, ok := after[k]; !ok {
				t.Errorf("data directory changed by the failed start: %s removed", k)
			}
		}
	}

	// The right key still opens everything.
	n.MustStart()
	d, err := n.RootClient(t).Decrypt(ctx, "", &kms.DecryptRequest{Name: "k", Ciphertext: g[0].Ciphertext})
	noErr(t, err, "Decrypt after failed start with the wrong key")
	if !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
		t.Errorf("Decrypt after failed start: plaintext differs")
	}
}

// TestStartFailures checks that bad start-ups fail fast with one clear line.
func TestStartFailures(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aFile := write("not-a-dir", "x")
	hsmKey := testnode.NewHSMKey(t)

	for _, tc := range []struct {
		name     string
		hsmKey   string // "" = unset
		dir      string
		config   string
		contains []string // substrings of stderr (case-insensitive)
	}{
		{name: "missing HSM key", dir: "fresh", contains: []string{"MINIO_KMS_HSM_KEY"}},
		{name: "malformed HSM key", hsmKey: "hsm:aes256:not-base64!", dir: "fresh"},
		{name: "HSM key of 16 bytes", hsmKey: "hsm:aes256:" + base64.StdEncoding.EncodeToString(make([]byte, 16)), dir: "fresh"},
		{name: "data dir is a file", hsmKey: hsmKey, dir: aFile},
		{name: "data dir below a file", hsmKey: hsmKey, dir: filepath.Join(aFile, "sub")},
		{name: "config file missing", hsmKey: hsmKey, dir: "fresh", config: filepath.Join(tmp, "missing.yaml")},
		{name: "config not YAML", hsmKey: hsmKey, dir: "fresh", config: write("bad.yaml", "version: v1\ntls: [\n  : :\n")},
		{name: "config version v2", hsmKey: hsmKey, dir: "fresh", config: write("v2.yaml", "version: v2\n")},
		{name: "config unknown field", hsmKey: hsmKey, dir: "fresh", config: write("unknown.yaml", "version: v1\nadress: 1.2.3.4\n")},
		{name: "config bad admin identity", hsmKey: hsmKey, dir: "fresh", config: write("admin.yaml", "version: v1\nadmin:\n  identity: h1:nope\n")},
		{name: "config cert files missing", hsmKey: hsmKey, dir: "fresh", config: write("certs.yaml", "version: v1\ntls:\n  certs:\n    - key: /nonexistent/private.key\n      cert: /nonexistent/public.crt\n")},
	} {
		dir := tc.dir
		if dir == "fresh" {
			dir = filepath.Join(t.TempDir(), "data")
		}
		env := testnode.BaseEnv(t.TempDir())
		if tc.hsmKey != "" {
			env = append(env, "MINIO_KMS_HSM_KEY="+tc.hsmKey)
		}
		addr := testnode.AllocAddr(t)
		args := []string{"server", dir, "--address", addr, "--host", addr}
		if tc.config != "" {
			args = append(args, "--config", tc.config)
		}
		start := time.Now()
		r := testnode.Run(t, env, args...)
		if r.Code == 0 {
			t.Errorf("%s: exit code 0, want non-zero", tc.name)
		}
		if time.Since(start) > 10*time.Second {
			t.Errorf("%s: took %v to fail", tc.name, time.Since(start))
		}
		if strings.Contains(r.Stdout, testnode.ReadyLine) {
			t.Errorf("%s: printed %q", tc.name, testnode.ReadyLine)
		}
		msg := strings.TrimSpace(r.Stderr)
		switch {
		case msg == "":
			t.Errorf("%s: nothing on stderr", tc.name)
		case strings.Contains(msg, "\n"):
			t.Errorf("%s: stderr has %d lines, want one clear line:\n%s", tc.name, strings.Count(msg, "\n")+1, msg)
		case strings.Contains(msg, "goroutine ") || strings.Contains(msg, "panic"):
			t.Errorf("%s: stderr looks like a crash: %s", tc.name, msg)
		}
		for _, s := range tc.contains {
			if !strings.Contains(strings.ToLower(msg), strings.ToLower(s)) {
				t.Errorf("%s: stderr %q does not mention %q", tc.name, msg, s)
			}
		}
		if tc.hsmKey != "" && strings.Contains(r.Stderr, strings.TrimPrefix(tc.hsmKey, "hsm:aes256:")) && len(tc.hsmKey) > 20 {
			t.Errorf("%s: stderr repeats the HSM key", tc.name)
		}
		t.Logf("%s: exit %d: %s", tc.name, r.Code, msg)
	}
}

// TestRootAPIKey checks that the root API key is a function of the HSM key
// alone, and that admin.identity in the config replaces it.
func TestRootAPIKey(t *testing.T) {
	t.Parallel()
	hsmKey := testnode.NewHSMKey(t)
	n1 := testnode.Start(t, testnode.Options{HSMKey: hsmKey})
	n2 := testnode.Start(t, testnode.Options{HSMKey: hsmKey})
	n3 := testnode.Start(t, testnode.Options{})
	if n1.APIKey != n2.APIKey {
		t.Errorf("two nodes with the same HSM key print different root API keys: %s and %s", n1.APIKey, n2.APIKey)
	}
	if n1.APIKey == n3.APIKey {
		t.Errorf("nodes with different HSM keys print the same root API key %s", n1.APIKey)
	}
	ctx := ctxT(t)
	r, err := n2.RootClient(t).GetIdentity(ctx, "", &kms.IdentityRequest{})
	noErr(t, err, "GetIdentity self with the root key")
	if r[0].Privilege != kms.SysAdmin {
		t.Errorf("root API key: privilege %v, want SysAdmin", r[0].Privilege)
	}
	// n1's key is root on n2: the key does not depend on DIR or address.
	noErr(t, n2.Client(t, n1.Root).CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "by-n1-key"}), "CreateEnclave on n2 with n1's root key")
	_, err = n3.Client(t, n1.Root).ListEnclaves(ctx, &kms.ListRequest{})
	errIs(t, err, kms.ErrPermission, "n1's root key on a node with another HSM key")

	// admin.identity replaces the HSM-derived root identity.
	admin := testnode.NewAPIKey(t)
	cfg := filepath.Join(t.TempDir(), "keep.yaml")
	if err := os.WriteFile(cfg, []byte("version: v1\nadmin:\n  identity: "+admin.Identity().String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n4 := testnode.Start(t, testnode.Options{HSMKey: hsmKey, Config: cfg, NoAPIKey: true})
	if strings.Contains(n4.Banner, n1.APIKey) {
		t.Errorf("banner with admin.identity still prints the HSM-derived root API key:\n%s", n4.Banner)
	}
	noErr(t, n4.Client(t, admin).CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "by-admin"}), "CreateEnclave by admin.identity")
	r, err = n4.Client(t, admin).GetIdentity(ctx, "", &kms.IdentityRequest{})
	noErr(t, err, "GetIdentity self by admin.identity")
	if r[0].Privilege != kms.SysAdmin || r[0].Identity != admin.Identity() {
		t.Errorf("admin.identity self: %v %v, want %v SysAdmin", r[0].Identity, r[0].Privilege, admin.Identity())
	}
	_, err = n4.Client(t, n1.Root).ListEnclaves(ctx, &kms.ListRequest{})
	errIs(t, err, kms.ErrPermission, "HSM-derived root key on a node whose config names admin.identity")
}

// TestDevMode starts keep server --dev: no DIR, no HSM key, in memory.
func TestDevMode(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{Dev: true, HSMKey: "-"})
	ctx := ctxT(t)
	c := n.RootClient(t)
	noErr(t, c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "dev"}), "CreateKey in dev mode")
	g, err := c.GenerateKey(ctx, "", &kms.GenerateKeyRequest{Name: "dev"})
	noErr(t, err, "GenerateKey in dev mode")
	d, err := c.Decrypt(ctx, "", &kms.DecryptRequest{Name: "dev", Ciphertext: g[0].Ciphertext})
	noErr(t, err, "Decrypt in dev mode")
	if !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
		t.Errorf("dev mode round trip differs")
	}
	noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "dev-enclave"}), "CreateEnclave in dev mode")

	// The banner names the file of the self-signed certificate, and a
	// client that trusts that file verifies the node (as MinIO does).
	var certFile string
	for _, line := range strings.Split(n.Stdout(), "\n") {
		if f, ok := strings.CutPrefix(line, "Certificate"); ok {
			certFile = strings.Fields(f)[0]
		}
	}
	pemData, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatalf("dev certificate %q from the banner: %v", certFile, err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		t.Fatalf("dev certificate %s holds no PEM certificate", certFile)
	}
	verified, err := kms.NewClient(&kms.Config{Endpoints: []string{n.Addr}, APIKey: n.Root, TLS: &tls.Config{RootCAs: roots}})
	noErr(t, err, "client trusting the dev certificate")
	_, err = verified.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "dev"})
	noErr(t, err, "KeyStatus with the dev certificate verified")

	// Nothing survives.
	n.Restart()
	c = n.Client(t, n.Root)
	_, err = c.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "dev"})
	if err == nil {
		t.Errorf("dev mode: a key survived a restart")
	}
}

// TestKill9 kills a node while keys are being created and checks that every
// acknowledged creation survives.
func TestKill9(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	ctx := ctxT(t)
	c := n.RootClient(t)

	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%05d", w, i)
				if err := c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: name}); err != nil {
					return // the node is gone
				}
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		k := len(acked)
		mu.Unlock()
		if k >= 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.Kill() // SIGKILL while the writers are still going
	close(stop)
	wg.Wait()
	mu.Lock()
	names := slices.Clone(acked)
	mu.Unlock()
	if len(names) == 0 {
		t.Fatal("no key creation was acknowledged before kill -9")
	}
	t.Logf("%d key creations acknowledged before kill -9", len(names))

	n.MustStart()
	c = n.RootClient(t)
	var missing []string
	for chunk := range slices.Chunk(names, 500) {
		reqs := make([]*kms.KeyStatusRequest, len(chunk))
		for i, name := range chunk {
			reqs[i] = &kms.KeyStatusRequest{Name: name}
		}
		if _, err := c.KeyStatus(ctx, "", reqs...); err != nil {
			if !errors.Is(err, kms.ErrKeyNotFound) {
				t.Fatalf("KeyStatus after kill -9: %s", testnode.DescribeErr(err))
			}
			for _, name := range chunk {
				if _, err := c.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: name}); err != nil {
					missing = append(missing, name)
				}
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged keys are missing after kill -9 and restart: %v", len(missing), len(names), missing)
	}
	// The node still takes writes, also for names that were in flight.
	for w := range 4 {
		if err := c.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: fmt.Sprintf("after-%d", w)}); err != nil {
			t.Errorf("CreateKey after restart: %s", testnode.DescribeErr(err))
		}
	}
}

// TestSecretsAtRest searches every file of the data directory for key
// material the test knows: an imported key, the HSM key, generated DEKs.
func TestSecretsAtRest(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	ctx := ctxT(t)
	c := n.RootClient(t)

	imported := randBytes(t, 32)
	importedChaCha := randBytes(t, 32)
	noErr(t, c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "secrets"}), "CreateEnclave")
	noErr(t, c.ImportKey(ctx, "secrets", &kms.ImportKeyRequest{Name: "imported", Type: kms.AES256, Key: imported}), "ImportKey AES256")
	noErr(t, c.ImportKey(ctx, "", &kms.ImportKeyRequest{Name: "imported-chacha", Type: kms.ChaCha20, Key: importedChaCha}), "ImportKey ChaCha20")
	for i := range 20 {
		noErr(t, c.CreateKey(ctx, "secrets", &kms.CreateKeyRequest{Name: fmt.Sprintf("k%d", i)}), "CreateKey")
	}
	noErr(t, c.CreateKey(ctx, "secrets", &kms.CreateKeyRequest{Name: "imported", AddVersion: true}), "rotate imported")
	var deks [][]byte
	reqs := make([]*kms.GenerateKeyRequest, 50)
	for i := range reqs {
		reqs[i] = &kms.GenerateKeyRequest{Name: "imported", Version: 1}
	}
	gs, err := c.GenerateKey(ctx, "secrets", reqs...)
	noErr(t, err, "GenerateKey")
	for _, g := range gs {
		deks = append(deks, g.Plaintext)
	}
	n.Stop()

	hsmRaw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(n.HSMKey, "hsm:aes256:"))
	if err != nil || len(hsmRaw) != 32 {
		t.Fatalf("cannot decode the test's own HSM key: %v", err)
	}
	secrets := map[string][]byte{
		"imported AES256 key":   imported,
		"imported ChaCha20 key": importedChaCha,
		"HSM key":               hsmRaw,
	}
	for i, d := range deks {
		secrets[fmt.Sprintf("DEK %d", i)] = d
	}
	spellings := func(b []byte) map[string][]byte {
		return map[string][]byte{
			"raw":              b,
			"first half raw":   b[:16],
			"second half raw":  b[16:],
			"base64":           []byte(base64.StdEncoding.EncodeToString(b)),
			"base64 unpadded":  []byte(base64.RawStdEncoding.EncodeToString(b)),
			"base64url":        []byte(base64.RawURLEncoding.EncodeToString(b)),
			"hex":              []byte(hex.EncodeToString(b)),
			"HEX":              []byte(strings.ToUpper(hex.EncodeToString(b))),
			"base64 of prefix": []byte(base64.StdEncoding.EncodeToString(b)[:40]),
		}
	}
	found := false
	nfiles := 0
	err = filepath.WalkDir(n.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		nfiles++
		rel, _ := filepath.Rel(n.Dir, path)
		for what, secret := range secrets {
			for how, s := range spellings(secret) {
				if bytes.Contains(data, s) {
					found = true
					t.Errorf("%s: contains the %s (%s)", rel, what, how)
				}
			}
		}
		if bytes.Contains(data, []byte(n.HSMKey)) {
			t.Errorf("%s: contains the HSM key string", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if nfiles == 0 {
		t.Fatal("the data directory is empty")
	}
	if !found {
		t.Logf("searched %d files: no secret found", nfiles)
	}
	// And the data is really there: start again, the imported key still works.
	n.MustStart()
	g, err := n.RootClient(t).GenerateKey(ctx, "secrets", &kms.GenerateKeyRequest{Name: "imported", Version: 1})
	noErr(t, err, "GenerateKey after restart")
	d, err := n.RootClient(t).Decrypt(ctx, "secrets", &kms.DecryptRequest{Name: "imported", Ciphertext: g[0].Ciphertext})
	noErr(t, err, "Decrypt after restart")
	if !bytes.Equal(d[0].Plaintext, g[0].Plaintext) {
		t.Errorf("round trip after restart differs")
	}
}

// TestTLSConfig serves a CA-signed certificate from the config file and
// verifies it for real with RootCAs.
func TestTLSConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := testnode.AllocAddr(t)
	host := strings.Split(addr, ":")[0]
	ca := testnode.NewCA(t, "Keep e2e CA")
	leaf := ca.Issue(t, host, 0)
	keyFile, certFile := filepath.Join(dir, "private.key"), filepath.Join(dir, "public.crt")
	caFile := filepath.Join(dir, "ca.crt")
	writeFile(t, keyFile, leaf.KeyPEM)
	writeFile(t, certFile, leaf.CertPEM)
	writeFile(t, caFile, ca.CertPEM)
	cfg := filepath.Join(dir, "keep.yaml")
	writeFile(t, cfg, []byte(fmt.Sprintf("version: v1\ntls:\n  certs:\n    - key: %s\n      cert: %s\n  ca: %s\n", keyFile, certFile, caFile)))

	n := testnode.Start(t, testnode.Options{Addr: addr, Config: cfg})
	ctx := ctxT(t)

	verified, err := kms.NewClient(&kms.Config{
		Endpoints: []string{n.Addr},
		APIKey:    n.Root,
		TLS:       &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12},
	})
	noErr(t, err, "NewClient")
	noErr(t, verified.CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "tls"}), "CreateKey over a verified connection")
	vs, err := verified.Version(ctx, &kms.VersionRequest{})
	noErr(t, err, "Version over a verified connection")
	if len(vs) != 1 || vs[0].APIVersion != "v1" {
		t.Errorf("Version: %+v", vs)
	}

	// The server presents exactly the configured leaf.
	conn, err := tls.Dial("tcp", n.Addr, &tls.Config{RootCAs: ca.Pool(), ServerName: host})
	if err != nil {
		t.Fatalf("TLS dial with the CA: %v", err)
	}
	if got := conn.ConnectionState().PeerCertificates[0]; !bytes.Equal(got.Raw, leaf.Cert.Raw) {
		t.Errorf("server presents certificate %v, want the configured one %v", got.Subject, leaf.Cert.Subject)
	}
	conn.Close()

	// Another CA does not verify it.
	other := testnode.NewCA(t, "Other CA")
	unverified, err := kms.NewClient(&kms.Config{
		Endpoints: []string{n.Addr},
		APIKey:    n.Root,
		TLS:       &tls.Config{RootCAs: other.Pool()},
	})
	noErr(t, err, "NewClient")
	_, err = unverified.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "tls"})
	var uerr *tls.CertificateVerificationError
	if err == nil || !errors.As(err, &uerr) {
		t.Errorf("client trusting another CA: got %v, want a certificate verification error", err)
	}

	// Wrong host name: the certificate names 127.0.0.x only.
	conn, err = tls.Dial("tcp", n.Addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "kms.example.net"})
	if err == nil {
		conn.Close()
		t.Errorf("TLS dial with ServerName kms.example.net succeeded, want a host name mismatch")
	}

	// The CA-verified node survives a restart with the same certificate.
	n.Restart()
	noErr(t, func() error {
		_, err := verified.KeyStatus(ctx, "", &kms.KeyStatusRequest{Name: "tls"})
		return err
	}(), "KeyStatus over a verified connection after restart")

	// Without certificates in the config, the node makes its own.
	n2 := testnode.Start(t, testnode.Options{})
	conn, err = tls.Dial("tcp", n2.Addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS dial to a node with a generated certificate: %v", err)
	}
	if len(conn.ConnectionState().PeerCertificates) == 0 {
		t.Errorf("node without configured certificates presents none")
	}
	conn.Close()
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
