package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/keep-kms/keep/test/testnode"
)

// kesFixtureKey is a key of the fixture set's vectors.json.
type kesFixtureKey struct {
	Name      string `json:"name"`
	File      string `json:"file"`
	Algorithm string `json:"algorithm"`
}

// kesFixtureKeys returns the fixture set's directory and keys, or skips.
func kesFixtureKeys(t testing.TB) (string, []kesFixtureKey) {
	t.Helper()
	dir, err := testnode.KESFixtures()
	if err != nil {
		t.Skip(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Keys []kesFixtureKey `json:"keys"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("vectors.json: %v", err)
	}
	if len(v.Keys) == 0 {
		t.Fatal("vectors.json has no keys")
	}
	return dir, v.Keys
}

// copyKESFixture copies the fixture's keystore and KES config into a new
// directory, laid out as the fixture (config beside keystore/, the config's
// relative path), and returns it.
func copyKESFixture(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.Mkdir(filepath.Join(dst, "keystore"), 0o700); err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(filepath.Join(dir, "keystore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		copyFile(t, filepath.Join(dir, "keystore", f.Name()), filepath.Join(dst, "keystore", f.Name()))
	}
	copyFile(t, filepath.Join(dir, "kes-config.yml"), filepath.Join(dst, "kes-config.yml"))
	return dst
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// importOutcome is one key's line of an import-kes summary or dry run.
type importOutcome struct{ action, detail string }

// dryRunRows parses the table of keep import-kes --dry-run: key → action.
func dryRunRows(t *testing.T, out string) map[string]importOutcome {
	t.Helper()
	rows := map[string]importOutcome{}
	inTable := false
	rowRE := regexp.MustCompile(`^(\S+)\s+(import|already there|refuse \(\w+\)|skip)\s+(.*)$`)
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "KEY "):
			inTable = true
		case line == "":
			if inTable && len(rows) > 0 {
				return rows
			}
		case inTable:
			m := rowRE.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("dry run: unexpected line %q in\n%s", line, out)
			}
			rows[m[1]] = importOutcome{m[2], m[3]}
		}
	}
	return rows
}

// summaryCount returns the count of label ("imported", "already there",
// "refused", "skipped") in an import-kes summary.
func summaryCount(t *testing.T, out, label string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(label) + `:\s+(\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %q count in\n%s", label, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// listed returns the names listed under title ("Refused (not imported):")
// in an import-kes summary, each with its reason.
func listed(out, title string) map[string]string {
	names := map[string]string{}
	_, rest, ok := strings.Cut(out, title+"\n")
	if !ok {
		return names
	}
	for _, line := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		name, reason, _ := strings.Cut(strings.TrimSpace(line), " ")
		names[name] = strings.TrimSpace(reason)
	}
	return names
}

// enclaveKeys returns name → status of every key of enclave.
func enclaveKeys(t *testing.T, c *kms.Client, enclave string) map[string]*kms.KeyStatusResponse {
	t.Helper()
	keys := map[string]*kms.KeyStatusResponse{}
	req := &kms.ListRequest{Enclave: enclave}
	for {
		page, err := c.ListKeys(ctxT(t), req)
		noErr(t, err, "ListKeys "+enclave)
		for i := range page.Items {
			keys[page.Items[i].Name] = &page.Items[i]
		}
		if page.ContinueAt == "" || len(page.Items) == 0 {
			return keys
		}
		req.ContinueAt = page.ContinueAt
	}
}

// checkImported checks that every key of want is in enclave, as version 1
// of a key of the fixture's algorithm.
func checkImported(t *testing.T, c *kms.Client, enclave string, want []kesFixtureKey) {
	t.Helper()
	got := enclaveKeys(t, c, enclave)
	for _, k := range want {
		s, ok := got[k.Name]
		if !ok {
			t.Errorf("enclave %s: key %s was not imported", enclave, k.Name)
			continue
		}
		if s.Type.String() != k.Algorithm || s.Version != 1 {
			t.Errorf("enclave %s: key %s is version %d of type %s, want version 1 of %s", enclave, k.Name, s.Version, s.Type, k.Algorithm)
		}
		st, err := single(c.KeyStatus(ctxT(t), enclave, &kms.KeyStatusRequest{Name: k.Name}))
		if err != nil || st.Name != k.Name || st.Type.String() != k.Algorithm {
			t.Errorf("enclave %s: status of %s: %+v, %v", enclave, k.Name, st, err)
		}
	}
}

// checkDecrypts decrypts, for every key of the fixture, one of its KES
// ciphertexts in enclave over the MinIO KMS API: the CLI sent the key file
// as it is.
func checkDecrypts(t *testing.T, c *kms.Client, dir, enclave string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Vectors []struct {
			Key        string `json:"key"`
			Plaintext  []byte `json:"plaintext"`
			Context    []byte `json:"context"`
			Ciphertext []byte `json:"ciphertext"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("vectors.json: %v", err)
	}
	done := map[string]bool{}
	for _, vec := range v.Vectors {
		if done[vec.Key] {
			continue
		}
		done[vec.Key] = true
		pt, err := single(c.Decrypt(ctxT(t), enclave, &kms.DecryptRequest{Name: vec.Key, Ciphertext: vec.Ciphertext, AssociatedData: vec.Context}))
		if err != nil || !bytes.Equal(pt.Plaintext, vec.Plaintext) {
			t.Errorf("enclave %s: a KES ciphertext of %s does not decrypt: %s", enclave, vec.Key, testnode.DescribeErr(err))
		}
	}
	if len(done) == 0 {
		t.Error("vectors.json has no vectors")
	}
}

// single returns the only reply of a batch call with one request.
func single[T any](replies []*T, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	if len(replies) != 1 {
		return nil, fmt.Errorf("%d replies to 1 request", len(replies))
	}
	return replies[0], nil
}

// TestImportKES imports the fixture's fs keystore with the keep CLI, from
// the KES config and from the bare directory, and checks dry runs, re-runs,
// --key, and that malformed files, links and name conflicts are reported
// and change nothing.
func TestImportKES(t *testing.T) {
	t.Parallel()
	dir, keys := kesFixtureKeys(t)
	n := testnode.Start(t, testnode.Options{})
	c := n.RootClient(t)
	env := append(testnode.BaseEnv(t.TempDir()), "MINIO_KMS_SERVER="+n.Endpoint(), "MINIO_KMS_API_KEY="+n.APIKey)
	run := func(workDir string, args ...string) testnode.Result {
		t.Helper()
		return testnode.RunIn(t, workDir, env, append([]string{"import-kes", "-k"}, args...)...)
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = k.Name
	}
	for _, e := range []string{"kes-config", "kes-fs", "kes-filter", "kes-conflict"} {
		noErr(t, c.CreateEnclave(ctxT(t), &kms.CreateEnclaveRequest{Name: e}), "CreateEnclave "+e)
	}

	t.Run("config", func(t *testing.T) {
		work := copyKESFixture(t, dir)

		// A dry run lists every key as one to import and imports nothing.
		r := run(work, "--config", "kes-config.yml", "-e", "kes-config", "--dry-run")
		if r.Code != 0 {
			t.Fatal(r)
		}
		rows := dryRunRows(t, r.Stdout)
		for _, k := range keys {
			if row := rows[k.Name]; row.action != "import" || !strings.Contains(row.detail, k.Algorithm) {
				t.Errorf("dry run: key %s: %+v, want import of %s", k.Name, row, k.Algorithm)
			}
		}
		if len(rows) != len(keys) {
			t.Errorf("dry run lists %d keys, the keystore has %d:\n%s", len(rows), len(keys), r.Stdout)
		}
		if got := enclaveKeys(t, c, "kes-config"); len(got) != 0 {
			t.Fatalf("the dry run created %d keys", len(got))
		}

		// The config's relative path is relative to the working directory,
		// as in KES: from another directory there is no keystore.
		r = run(t.TempDir(), "--config", filepath.Join(work, "kes-config.yml"), "-e", "kes-config")
		if r.Code != 1 || !strings.Contains(r.Stderr, "does not exist (relative paths are relative to the working directory") {
			t.Errorf("import from another working directory: %s", r)
		}

		r = run(work, "--config", "kes-config.yml", "-e", "kes-config")
		if r.Code != 0 {
			t.Fatal(r)
		}
		if got := summaryCount(t, r.Stdout, "imported"); got != len(keys) {
			t.Errorf("imported %d keys, want %d:\n%s", got, len(keys), r.Stdout)
		}
		checkImported(t, c, "kes-config", keys)
		checkDecrypts(t, c, dir, "kes-config")

		// A re-run finds every key already there and changes nothing.
		r = run(work, "--config", "kes-config.yml", "-e", "kes-config")
		if r.Code != 0 || summaryCount(t, r.Stdout, "already there") != len(keys) || summaryCount(t, r.Stdout, "imported") != 0 {
			t.Errorf("re-run: %s", r)
		}
		r = run(work, "--config", "kes-config.yml", "-e", "kes-config", "--dry-run")
		rows = dryRunRows(t, r.Stdout)
		for _, k := range keys {
			if rows[k.Name].action != "already there" {
				t.Errorf("dry run after the import: key %s: %+v, want already there", k.Name, rows[k.Name])
			}
		}
		checkImported(t, c, "kes-config", keys)
	})

	t.Run("fs", func(t *testing.T) {
		work := copyKESFixture(t, dir)
		ks := filepath.Join(work, "keystore")
		// Odd entries: a malformed key file, a link, a directory and a
		// name KES does not accept.
		malformed := unusedName(names, "malformed")
		link := unusedName(names, "link")
		if err := os.WriteFile(filepath.Join(ks, malformed), []byte("not a KES key file"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(ks, keys[0].Name), filepath.Join(ks, link)); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(ks, "subdir"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ks, "notes.txt"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}

		r := run(t.TempDir(), "--fs", ks, "-e", "kes-fs", "--dry-run")
		if r.Code != 1 {
			t.Errorf("dry run with a malformed file: exit %d, want 1\n%s", r.Code, r)
		}
		rows := dryRunRows(t, r.Stdout)
		for name, want := range map[string]string{malformed: "refuse (malformed)", link: "refuse (unreadable)", "subdir": "skip", "notes.txt": "skip"} {
			if rows[name].action != want {
				t.Errorf("dry run: %s: %+v, want %s", name, rows[name], want)
			}
		}

		r = run(t.TempDir(), "--fs", ks, "-e", "kes-fs")
		if r.Code != 1 {
			t.Errorf("import with a malformed file: exit %d, want 1\n%s", r.Code, r)
		}
		refused := listed(r.Stdout, "Refused (not imported):")
		if len(refused) != 2 || !strings.HasPrefix(refused[malformed], "malformed: ") || !strings.Contains(refused[link], "symbolic link") {
			t.Errorf("refused %v, want %s (malformed) and %s (link)\n%s", refused, malformed, link, r)
		}
		if skipped := listed(r.Stdout, "Skipped (not KES keys):"); len(skipped) != 2 || skipped["subdir"] != "directory" || skipped["notes.txt"] == "" {
			t.Errorf("skipped %v, want subdir and notes.txt", skipped)
		}
		for _, name := range []string{malformed, link} {
			if !strings.Contains(r.Stderr, "refused "+name+": ") {
				t.Errorf("stderr does not report %s:\n%s", name, r.Stderr)
			}
		}
		checkImported(t, c, "kes-fs", keys)
		got := enclaveKeys(t, c, "kes-fs")
		if len(got) != len(keys) {
			t.Errorf("enclave kes-fs has %d keys, want the %d of the keystore", len(got), len(keys))
		}
		for _, name := range []string{malformed, link, "subdir"} {
			if _, ok := got[name]; ok {
				t.Errorf("%s was imported", name)
			}
		}
	})

	t.Run("key filter", func(t *testing.T) {
		work := copyKESFixture(t, dir)
		prefix := keys[len(keys)-1].Name[:3]
		var want []kesFixtureKey
		for _, k := range keys {
			if strings.HasPrefix(k.Name, prefix) {
				want = append(want, k)
			}
		}
		r := run(work, "--config", "kes-config.yml", "-e", "kes-filter", "--key", prefix+"*")
		if r.Code != 0 || summaryCount(t, r.Stdout, "imported") != len(want) {
			t.Fatalf("--key %s*: want %d imported\n%s", prefix, len(want), r)
		}
		checkImported(t, c, "kes-filter", want)
		if got := enclaveKeys(t, c, "kes-filter"); len(got) != len(want) {
			t.Errorf("--key %s*: %d keys in the enclave, want %d", prefix, len(got), len(want))
		}

		// Without --key, the same import completes: the filtered keys are
		// already there, the others are imported now.
		r = run(work, "--config", "kes-config.yml", "-e", "kes-filter")
		if r.Code != 0 || summaryCount(t, r.Stdout, "imported") != len(keys)-len(want) || summaryCount(t, r.Stdout, "already there") != len(want) {
			t.Errorf("import after --key %s*: want %d imported, %d already there\n%s", prefix, len(keys)-len(want), len(want), r)
		}
		checkImported(t, c, "kes-filter", keys)

		r = run(work, "--config", "kes-config.yml", "-e", "kes-filter", "--key", "no-such-key-*")
		if r.Code != 1 || !strings.Contains(r.Stderr, `matches "no-such-key-*"`) {
			t.Errorf("--key matching nothing: %s", r)
		}
		r = run(work, "--config", "kes-config.yml", "-e", "kes-filter", "--key", "[")
		if r.Code != 2 || !strings.Contains(r.Stderr, "invalid key pattern") {
			t.Errorf("--key [: %s", r)
		}
	})

	t.Run("conflict", func(t *testing.T) {
		work := copyKESFixture(t, dir)
		victim := keys[0].Name
		// A Keep key of the same name, with data encrypted under it.
		kr := testnode.Run(t, env, "add-key", victim, "-e", "kes-conflict", "-k")
		if kr.Code != 0 {
			t.Fatal(kr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dek, err := single(c.GenerateKey(ctx, "kes-conflict", &kms.GenerateKeyRequest{Name: victim, AssociatedData: []byte("ctx"), Length: 32}))
		noErr(t, err, "GenerateKey")
		before := enclaveKeys(t, c, "kes-conflict")[victim]

		r := run(work, "--config", "kes-config.yml", "-e", "kes-conflict")
		if r.Code != 1 {
			t.Errorf("import over an existing key: exit %d, want 1\n%s", r.Code, r)
		}
		refused := listed(r.Stdout, "Refused (not imported):")
		if len(refused) != 1 || !strings.HasPrefix(refused[victim], "conflict: ") {
			t.Errorf("refused %v, want %s as a conflict\n%s", refused, victim, r)
		}
		if !strings.Contains(r.Stderr, "refused "+victim+": conflict") {
			t.Errorf("stderr does not report the conflict:\n%s", r.Stderr)
		}
		if summaryCount(t, r.Stdout, "imported") != len(keys)-1 {
			t.Errorf("want the other %d keys imported:\n%s", len(keys)-1, r.Stdout)
		}
		checkImported(t, c, "kes-conflict", slices.DeleteFunc(slices.Clone(keys), func(k kesFixtureKey) bool { return k.Name == victim }))

		// The Keep key is untouched: same version and creation, and it still
		// decrypts what it encrypted.
		after := enclaveKeys(t, c, "kes-conflict")[victim]
		if after == nil || after.Version != before.Version || !after.CreatedAt.Equal(before.CreatedAt) {
			t.Errorf("key %s changed: %+v, was %+v", victim, after, before)
		}
		pt, err := single(c.Decrypt(ctx, "kes-conflict", &kms.DecryptRequest{Name: victim, Ciphertext: dek.Ciphertext, AssociatedData: []byte("ctx")}))
		if err != nil || string(pt.Plaintext) != string(dek.Plaintext) {
			t.Errorf("the Keep key %s no longer decrypts its data key: %v", victim, err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		work := copyKESFixture(t, dir)
		vault := filepath.Join(work, "vault.yml")
		if err := os.WriteFile(vault, []byte("version: v1\nkeystore:\n  vault:\n    endpoint: https://127.0.0.1:8200\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			args []string
			code int
			msg  string
		}{
			{[]string{"--config", vault}, 1, "keystore vault is not supported by keep import-kes yet"},
			{[]string{"--config", "kes-config.yml", "-e", "no-such-enclave"}, 1, "enclave does not exist"},
			{[]string{"--config", "kes-config.yml", "--fs", "keystore"}, 2, "--config and --fs cannot be used together"},
			{nil, 2, "give --config FILE or --fs DIR"},
		} {
			r := run(work, tt.args...)
			if r.Code != tt.code || !strings.Contains(r.Stderr, tt.msg) {
				t.Errorf("import-kes %s: exit %d, want %d with %q\n%s", strings.Join(tt.args, " "), r.Code, tt.code, tt.msg, r)
			}
		}
	})
}

// unusedName returns a KES key name starting with base that is not in
// names.
func unusedName(names []string, base string) string {
	for i := 0; ; i++ {
		name := base + "-" + strconv.Itoa(i)
		if !slices.Contains(names, name) {
			return name
		}
	}
}

// BenchmarkImportKES10000 imports an fs keystore of 10,000 KES key files
// (half protobuf-base64 with HMAC keys, as KES writes them since 2024, half
// JSON as before) with keep import-kes into a fresh enclave of one node per
// iteration. The goal of issue 10 is under 30 s for the 10,000.
//
//	go test ./test/e2e -run '^$' -bench ImportKES10000 -benchtime 1x
func BenchmarkImportKES10000(b *testing.B) {
	if testing.Short() {
		b.Skip("imports 10,000 keys")
	}
	const keys = 10_000
	ks := b.TempDir()
	created := time.Date(2025, 5, 27, 12, 0, 0, 0, time.UTC)
	for i := range keys {
		var file []byte
		if i%2 == 0 {
			file = kesProtobufKeyFile(randomBytes(b, 32), randomBytes(b, 32), created, "a3ce268ef7399b023486be32a99563421a3d690e795fda6641c3f29535dfb9d5")
		} else {
			file = fmt.Appendf(nil, `{"version":"v1","bytes":%q,"created_at":%q,"created_by":"a3ce268ef7399b023486be32a99563421a3d690e795fda6641c3f29535dfb9d5"}`,
				base64.StdEncoding.EncodeToString(randomBytes(b, 32)), created.Format(time.RFC3339Nano))
		}
		if err := os.WriteFile(filepath.Join(ks, fmt.Sprintf("bench-key-%05d", i)), file, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	n := testnode.Start(b, testnode.Options{})
	c := n.RootClient(b)
	env := append(testnode.BaseEnv(b.TempDir()), "MINIO_KMS_SERVER="+n.Endpoint(), "MINIO_KMS_API_KEY="+n.APIKey)

	b.ResetTimer()
	var elapsed time.Duration
	for i := range b.N {
		b.StopTimer()
		enclave := fmt.Sprintf("bench-import-%d", i)
		noErr(b, c.CreateEnclave(context.Background(), &kms.CreateEnclaveRequest{Name: enclave}), "CreateEnclave")
		b.StartTimer()
		start := time.Now()
		r := testnode.Run(b, env, "import-kes", "-k", "--fs", ks, "-e", enclave)
		elapsed += time.Since(start)
		b.StopTimer()
		if r.Code != 0 || !strings.Contains(r.Stdout, fmt.Sprintf("imported:       %d", keys)) {
			b.Fatalf("import of %d keys:\n%s", keys, r)
		}
		if got := countKeys(b, c, enclave); got != keys {
			b.Fatalf("enclave %s has %d keys, want %d", enclave, got, keys)
		}
		b.StartTimer()
	}
	b.StopTimer()
	perRun := elapsed / time.Duration(b.N)
	b.ReportMetric(float64(keys)/perRun.Seconds(), "keys/s")
	b.Logf("imported %d KES keys in %v per run (goal: under 30 s)", keys, perRun.Round(time.Millisecond))
}

// countKeys counts the keys of enclave.
func countKeys(b *testing.B, c *kms.Client, enclave string) int {
	b.Helper()
	total := 0
	req := &kms.ListRequest{Enclave: enclave}
	for {
		page, err := c.ListKeys(context.Background(), req)
		noErr(b, err, "ListKeys")
		total += len(page.Items)
		if page.ContinueAt == "" || len(page.Items) == 0 {
			return total
		}
		req.ContinueAt = page.ContinueAt
	}
}

// randomBytes returns n random bytes.
func randomBytes(b *testing.B, n int) []byte {
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		b.Fatal(err)
	}
	return p
}

// kesProtobufKeyFile returns a key file as KES 63649d0 writes it: standard
// base64 of a KeyVersion message (schema in the fixture's README) of an
// AES256 key with an HMAC-SHA256 key.
func kesProtobufKeyFile(key, hmacKey []byte, createdAt time.Time, createdBy string) []byte {
	const aes256, sha256 = 1, 1
	var secret, hmac, ts, msg []byte
	secret = protowire.AppendTag(secret, 1, protowire.BytesType)
	secret = protowire.AppendBytes(secret, key)
	secret = protowire.AppendTag(secret, 2, protowire.VarintType)
	secret = protowire.AppendVarint(secret, aes256)
	hmac = protowire.AppendTag(hmac, 1, protowire.BytesType)
	hmac = protowire.AppendBytes(hmac, hmacKey)
	hmac = protowire.AppendTag(hmac, 2, protowire.VarintType)
	hmac = protowire.AppendVarint(hmac, sha256)
	ts = protowire.AppendTag(ts, 1, protowire.VarintType)
	ts = protowire.AppendVarint(ts, uint64(createdAt.Unix())) // #nosec G115 -- a time after 1970
	ts = protowire.AppendTag(ts, 2, protowire.VarintType)
	ts = protowire.AppendVarint(ts, uint64(createdAt.Nanosecond())) // #nosec G115 -- 0 to 999,999,999
	for _, f := range []struct {
		num protowire.Number
		val []byte
	}{{1, secret}, {2, hmac}, {3, ts}, {4, []byte(createdBy)}} {
		msg = protowire.AppendTag(msg, f.num, protowire.BytesType)
		msg = protowire.AppendBytes(msg, f.val)
	}
	return []byte(base64.StdEncoding.EncodeToString(msg))
}
