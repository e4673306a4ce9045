package attack

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/test/testnode"
)

// tamperEnclave holds what populate creates.
const tamperEnclave = "tamper"

// fixture is what populate wrote to a node: data keys whose ciphertexts
// must decrypt again after a restore or an upgrade, and a User identity.
type fixture struct {
	deks []dek
	user string // identity of a User with a policy
}

type dek struct {
	key        string
	ciphertext []byte
	plaintext  []byte
}

func tctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// populate creates keys (one rotated, one ChaCha20), a policy and an
// identity in the enclave tamper, and data keys under every key version.
func populate(t *testing.T, c *kms.Client) fixture {
	t.Helper()
	ctx := tctx(t)
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %s", what, testnode.DescribeErr(err))
		}
	}
	must(c.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: tamperEnclave}), "create enclave")
	must(c.CreateKey(ctx, tamperEnclave, &kms.CreateKeyRequest{Name: "aes", Type: kms.AES256}), "create aes")
	must(c.CreateKey(ctx, tamperEnclave, &kms.CreateKeyRequest{Name: "chacha", Type: kms.ChaCha20}), "create chacha")
	var f fixture
	gen := func(key string) {
		g, err := c.GenerateKey(ctx, tamperEnclave, &kms.GenerateKeyRequest{Name: key})
		must(err, "generate "+key)
		f.deks = append(f.deks, dek{key, g[0].Ciphertext, g[0].Plaintext})
	}
	gen("aes")
	gen("chacha")
	must(c.CreateKey(ctx, tamperEnclave, &kms.CreateKeyRequest{Name: "aes", AddVersion: true}), "rotate aes")
	gen("aes")
	must(c.CreatePolicy(ctx, tamperEnclave, &kms.CreatePolicyRequest{
		Name:  "gen",
		Allow: map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: {"aes": {}}},
	}), "create policy")
	user := testnode.NewAPIKey(t)
	f.user = user.Identity().String()
	must(c.CreateIdentity(ctx, tamperEnclave, &kms.CreateIdentityRequest{Identity: user.Identity(), Privilege: kms.User}), "create identity")
	must(c.AssignPolicy(ctx, tamperEnclave, &kms.AssignPolicyRequest{Policy: "gen", Identity: user.Identity()}), "assign policy")
	return f
}

// check fails the test unless c serves everything f wrote.
func (f fixture) check(t *testing.T, c *kms.Client, phase string) {
	t.Helper()
	ctx := tctx(t)
	for _, d := range f.deks {
		pt, err := c.Decrypt(ctx, tamperEnclave, &kms.DecryptRequest{Name: d.key, Ciphertext: d.ciphertext})
		if err != nil {
			t.Fatalf("%s: decrypt a ciphertext of %s made before: %s", phase, d.key, testnode.DescribeErr(err))
		}
		if !bytes.Equal(pt[0].Plaintext, d.plaintext) {
			t.Fatalf("%s: %s decrypts to another plaintext", phase, d.key)
		}
	}
	ids, err := c.ListIdentities(ctx, &kms.ListRequest{Enclave: tamperEnclave})
	if err != nil || len(ids.Items) != 1 || ids.Items[0].Identity.String() != f.user || ids.Items[0].Policy != "gen" {
		t.Fatalf("%s: identities %+v, %v", phase, ids, err)
	}
}

// wantFresh fails the test unless the node behind c holds nothing but the
// default enclave: a refused restore applied nothing.
func wantFresh(t *testing.T, c *kms.Client, phase string) {
	t.Helper()
	page, err := c.ListEnclaves(tctx(t), &kms.ListRequest{})
	if err != nil {
		t.Fatalf("%s: list enclaves: %s", phase, testnode.DescribeErr(err))
	}
	if len(page.Items) != 1 || page.Items[0].Name != "default" {
		var names []string
		for _, e := range page.Items {
			names = append(names, e.Name)
		}
		t.Fatalf("%s: the node holds enclaves %v: something was applied", phase, names)
	}
}

// readBackup reads a backup from n, decompressed.
func readBackup(t *testing.T, n *testnode.Node) []byte {
	t.Helper()
	r, err := n.RootClient(t).ReadDB(tctx(t), &kms.ReadDBRequest{Host: n.Addr})
	if err != nil {
		t.Fatalf("read backup: %s", testnode.DescribeErr(err))
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		data = gunzip(t, data)
	}
	return data
}

func gunzip(t *testing.T, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func gzipped(data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	zw.Close()
	return buf.Bytes()
}

// spreadOffsets returns count offsets into n bytes, one in each of count
// equal stretches, drawn with a fixed seed so that a failure repeats.
func spreadOffsets(n, count int, seed uint64) []int {
	rng := rand.New(rand.NewPCG(seed, seed))
	var offs []int
	for i := range count {
		lo, hi := i*n/count, (i+1)*n/count
		if hi > lo {
			offs = append(offs, lo+rng.IntN(hi-lo))
		}
	}
	return offs
}

// flip returns data with one bit of the byte at off flipped.
func flip(data []byte, off int, seed uint64) []byte {
	out := bytes.Clone(data)
	out[off] ^= 1 << (seed % 8)
	return out
}

// stateRecord splits a backup or raft snapshot into what precedes the JSON
// of the state (Keep's envelope: magic, format, sealed root key, MAC; empty
// for the unauthenticated format 1 of earlier versions) and the JSON. An
// attacker without the HSM key can change the JSON and keep the rest.
func stateRecord(t *testing.T, data []byte) (head, body []byte) {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("KEEP")) {
		return nil, data
	}
	if len(data) < 11 {
		t.Fatalf("envelope of %d bytes", len(data))
	}
	n := 11 + int(binary.BigEndian.Uint16(data[9:11])) + sha256.Size
	return data[:n], data[n:]
}

// editState decodes the JSON of a backup or snapshot, lets edit change it,
// and encodes it again behind the same head.
func editState(t *testing.T, data []byte, edit func(map[string]any)) []byte {
	t.Helper()
	head, body := stateRecord(t, data)
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append(bytes.Clone(head), out...)
}

// injectSysAdmin adds an identity with SysAdmin privilege to the state.
func injectSysAdmin(id string) func(map[string]any) {
	return func(m map[string]any) {
		ids, _ := m["identities"].([]any)
		m["identities"] = append(ids, map[string]any{
			"ID": id, "Enclave": "default", "Privilege": 1, "CreatedAt": time.Now().UTC(),
		})
	}
}

// remac computes the MAC of a backup envelope again, as only a holder of
// the HSM key can: it unseals the root key in the envelope and derives
// the backup MAC key (HKDF-SHA256, info keep/mac/backup/v1). For a backup
// of format 1, which has no MAC, it returns data as it is.
func remac(t *testing.T, hsmKey string, data []byte) []byte {
	t.Helper()
	head, body := stateRecord(t, data)
	if head == nil {
		return data
	}
	h, err := hsm.ParseSoftKey(hsmKey)
	if err != nil {
		t.Fatal(err)
	}
	sealedLen := int(binary.BigEndian.Uint16(head[9:11]))
	// The envelope holds the cluster's seals; the keyring finds the one
	// this HSM key made.
	root, err := hsm.NewKeyring(h).Unseal(context.Background(), head[11:11+sealedLen])
	if err != nil {
		t.Fatal(err)
	}
	key, err := hkdf.Key(sha256.New, root, nil, "keep/mac/backup/v1", sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write(head[:len(head)-sha256.Size])
	m.Write(body)
	out := append(bytes.Clone(head[:len(head)-sha256.Size]), m.Sum(nil)...)
	return append(out, body...)
}

// restore sends a backup to n, with ?unauthenticated-legacy if legacy.
func restore(t *testing.T, n *testnode.Node, backup []byte, legacy bool) error {
	t.Helper()
	if !legacy {
		return n.RootClient(t).WriteDB(tctx(t), &kms.WriteDBRequest{Host: n.Addr, Body: bytes.NewReader(backup)})
	}
	hc := testnode.HTTPClient(t, n.Root, time.Minute)
	req, err := http.NewRequestWithContext(tctx(t), http.MethodPut, n.Endpoint()+"/v1/db?unauthenticated-legacy", bytes.NewReader(backup))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("status %d: %s", resp.StatusCode, msg)
	}
	return nil
}

// copyDir copies the regular files of the tree src to dst, which it
// creates; it replaces dst if it exists.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// newestSnapshot returns the directory of the newest raft snapshot in dir.
func newestSnapshot(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	// Raft names a snapshot TERM-INDEX-MILLISECONDS and restores the one
	// of the highest term, then index, then name: compare as numbers, so
	// that 2-13-… comes after 2-9-….
	var newest string
	var best [3]uint64
	for _, e := range entries {
		var id [3]uint64
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if _, err := fmt.Sscanf(e.Name(), "%d-%d-%d", &id[0], &id[1], &id[2]); err != nil {
			continue
		}
		if newest == "" || slices.Compare(id[:], best[:]) > 0 {
			newest, best = e.Name(), id
		}
	}
	if newest == "" {
		t.Fatalf("no snapshot in %s", dir)
	}
	return filepath.Join(dir, "snapshots", newest)
}

// writeSnapshot replaces the state of a raft snapshot and fixes raft's
// size and CRC-64 in its meta.json, as an attacker who edits the file
// would: raft's checksum detects accidents, not intent.
func writeSnapshot(t *testing.T, snapDir string, state []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(snapDir, "state.bin"), state, 0o600); err != nil {
		t.Fatal(err)
	}
	metaPath := filepath.Join(snapDir, "meta.json")
	raw, err := os.ReadFile(metaPath)
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]any
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	h := crc64.New(crc64.MakeTable(crc64.ECMA))
	h.Write(state)
	meta["CRC"] = base64.StdEncoding.EncodeToString(h.Sum(nil))
	meta["Size"] = len(state)
	raw, _ = json.Marshal(meta)
	if err := os.WriteFile(metaPath, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

// wantRefusedStart starts n and fails the test unless it refuses to come
// up with an error that says why and names want (a file or the log).
func wantRefusedStart(t *testing.T, n *testnode.Node, phase, want string) {
	t.Helper()
	err := n.Start()
	if err == nil {
		n.Stop()
		t.Fatalf("%s: the node started", phase)
	}
	var se *testnode.StartError
	if !errors.As(err, &se) || se.Timeout {
		t.Fatalf("%s: %v", phase, err)
	}
	if !strings.Contains(se.Stderr, "tampered") || !strings.Contains(se.Stderr, want) {
		t.Fatalf("%s: the node refused to start, but its error does not say it refuses tampered state in %s:\n%s", phase, want, testnode.Tail(se.Stderr, 2048))
	}
}

// oldBinary returns a keep binary built from the main of before the
// tamper-evident state (commit 2f7943d): $KEEP_OLD_BINARY, or one built
// from the repository's history and cached.
func oldBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KEEP_OLD_BINARY"); p != "" {
		return p
	}
	return testnode.OldBinary(t, "2f7943d")
}

// startWith starts the server n with the binary bin instead of the one
// under test, and waits for its banner.
func startWith(t *testing.T, n *testnode.Node, bin string) { n.StartWith(t, bin) }

func itoa(i int) string { return strconv.Itoa(i) }

func sleep() { time.Sleep(50 * time.Millisecond) }
