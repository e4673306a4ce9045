package miniotest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/keep-kms/keep/test/testnode"
)

// keepCluster is one Keep node, or several forming a cluster with `keep
// add`, each serving a server certificate signed by ca (config tls.certs),
// all with the same HSM key and so the same root API key.
type keepCluster struct {
	ca    *testCA
	nodes []*testnode.Node
	root  string // the root API key, k1:…
}

type keepOptions struct {
	nodes      int    // default 1
	kesEnclave string // kes.enclave of the config file; "" leaves it out
}

// startKeep starts the nodes, and forms a cluster of them with `keep add`
// run against the first.
func startKeep(t testing.TB, ca *testCA, opts keepOptions) *keepCluster {
	t.Helper()
	if opts.nodes < 1 {
		opts.nodes = 1
	}
	hsm := testnode.NewHSMKey(t)
	k := &keepCluster{ca: ca}
	for i := range opts.nodes {
		addr := testnode.AllocAddr(t)
		dir := t.TempDir()
		cert, key := ca.issue(t, dir, testnode.IPOf(addr))
		conf := fmt.Sprintf("version: v1\ntls:\n  certs:\n    - key: %s\n      cert: %s\n", key, cert)
		if opts.kesEnclave != "" {
			conf += fmt.Sprintf("kes:\n  enclave: %s\n", opts.kesEnclave)
		}
		file := filepath.Join(dir, "keep.yaml")
		if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		k.nodes = append(k.nodes, testnode.New(t, testnode.Options{
			Name:   fmt.Sprintf("keep%d", i),
			Addr:   addr,
			HSMKey: hsm,
			Config: file,
		}))
	}
	if *showLogs {
		t.Cleanup(func() {
			if !t.Failed() { // testnode logs them on failure
				t.Logf("logs of Keep:\n%s", k.logs())
			}
		})
	}
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	k.root = k.nodes[0].APIKey
	for _, n := range k.nodes[1:] {
		k.must(t, k.nodes[:1], "add", n.Host)
	}
	return k
}

// start starts every node (concurrently: a restarted cluster needs a
// majority to elect a leader).
func (k *keepCluster) start() error {
	errs := make([]error, len(k.nodes))
	var wg sync.WaitGroup
	for i, n := range k.nodes {
		wg.Go(func() { errs[i] = n.Start() })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// stop stops every node (SIGTERM).
func (k *keepCluster) stop() {
	var wg sync.WaitGroup
	for _, n := range k.nodes {
		wg.Go(n.Stop)
	}
	wg.Wait()
}

// endpoints are the https:// endpoints of the nodes.
func endpoints(nodes []*testnode.Node) []string {
	var list []string
	for _, n := range nodes {
		list = append(list, n.Endpoint())
	}
	return list
}

// server is the value of MINIO_KMS_SERVER (or MINIO_KMS_KES_ENDPOINT) that
// names every node.
func (k *keepCluster) server() string { return strings.Join(endpoints(k.nodes), ",") }

// cli runs a keep client command against nodes (default all) with apiKey
// (default the root key), trusting the CA through SSL_CERT_FILE as a user
// would.
func (k *keepCluster) cli(t testing.TB, nodes []*testnode.Node, apiKey string, args ...string) testnode.Result {
	t.Helper()
	if nodes == nil {
		nodes = k.nodes
	}
	if apiKey == "" {
		apiKey = k.root
	}
	env := append(testnode.BaseEnv(t.TempDir()),
		"MINIO_KMS_SERVER="+strings.Join(endpoints(nodes), ","),
		"MINIO_KMS_API_KEY="+apiKey,
		"SSL_CERT_FILE="+k.ca.File,
	)
	return testnode.Run(t, env, args...)
}

// must runs a keep client command with the root key and fails the test if
// it does not succeed. It returns its standard output.
func (k *keepCluster) must(t testing.TB, nodes []*testnode.Node, args ...string) string {
	t.Helper()
	r := k.cli(t, nodes, "", args...)
	if r.Code != 0 {
		t.Fatalf("%v", r)
	}
	return r.Stdout
}

var (
	apiKeyLine = regexp.MustCompile(`(?m)^API Key\s+(k[12]:[A-Za-z0-9_-]+)\s*$`)
	kesKeyLine = regexp.MustCompile(`(?m)^KES API Key\s+(kes:v1:[A-Za-z0-9+/=_-]+)\s*$`)
)

// addEnclaveAdmin creates an enclave and, with `keep add-identity
// --admin`, a new API key that is Admin of it (what MinIO gets in the
// MinIO KMS mode). It returns the API key.
func (k *keepCluster) addEnclaveAdmin(t testing.TB, enclave string) string {
	t.Helper()
	k.must(t, nil, "add-enclave", enclave)
	out := k.must(t, nil, "add-identity", "-e", enclave, "--admin")
	m := apiKeyLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keep add-identity printed no API key:\n%s", out)
	}
	return m[1]
}

// addKESAdmin creates an enclave and registers an Ed25519 API key as its
// Admin (KES API keys are Ed25519). It returns the key as KES spells it,
// kes:v1:…, which `keep identity` prints.
func (k *keepCluster) addKESAdmin(t testing.TB, enclave string) string {
	t.Helper()
	k.must(t, nil, "add-enclave", enclave)
	key := testnode.NewAPIKey(t)
	k.must(t, nil, "add-identity", key.Identity().String(), "-e", enclave, "--admin")
	out := k.must(t, nil, "identity", key.String())
	m := kesKeyLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keep identity %s printed no KES API key:\n%s", key, out)
	}
	return m[1]
}

// logs returns the logs of every node.
func (k *keepCluster) logs() string {
	var b strings.Builder
	for _, n := range k.nodes {
		b.WriteString(n.Logs())
	}
	return b.String()
}

var identityLine = regexp.MustCompile(`(?m)^Identity\s+(h1:[A-Za-z0-9_-]+)\s*$`)

// addUser creates an enclave, a policy in it from policyJSON and a User
// identity with that policy. With kes, the identity is an Ed25519 key
// registered with `keep add-identity IDENTITY` and returned as kes:v1:…;
// otherwise a new API key from `keep add-identity`.
func (k *keepCluster) addUser(t testing.TB, enclave, policy, policyJSON string, kes bool) string {
	t.Helper()
	k.must(t, nil, "add-enclave", enclave)
	k.must(t, nil, "add-policy", policy, writeFile(t, policyJSON), "-e", enclave)
	var apiKey, id string
	if kes {
		key := testnode.NewAPIKey(t)
		id = key.Identity().String()
		k.must(t, nil, "add-identity", id, "-e", enclave)
		out := k.must(t, nil, "identity", key.String())
		m := kesKeyLine.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("keep identity %s printed no KES API key:\n%s", key, out)
		}
		apiKey = m[1]
	} else {
		out := k.must(t, nil, "add-identity", "-e", enclave)
		m, i := apiKeyLine.FindStringSubmatch(out), identityLine.FindStringSubmatch(out)
		if m == nil || i == nil {
			t.Fatalf("keep add-identity printed no API key and identity:\n%s", out)
		}
		apiKey, id = m[1], i[1]
	}
	k.must(t, nil, "set-policy", policy, id, "-e", enclave)
	return apiKey
}
