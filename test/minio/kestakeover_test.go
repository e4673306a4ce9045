package miniotest

// MinIO takes over its data from KES (issue 10): the keystore of a KES
// fixture set (test/kesfixture) is imported into Keep, and the pinned MinIO
// is started on a copy of the set's MinIO data directory, whose objects,
// config and IAM data were encrypted through real KES servers: in KES mode,
// in MinIO KMS mode, and moved from the one to the other. Every name, key
// and object comes from the set's manifest.json.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/encrypt"

	"github.com/keep-kms/keep/test/kesfixture"
	"github.com/keep-kms/keep/test/testnode"
)

// takeoverEnclave is where the KES keys go: the enclave of Keep's KES API
// (kes.enclave) and MinIO's MINIO_KMS_ENCLAVE, so that a MinIO can move
// from one mode to the other.
const takeoverEnclave = "minio"

// minioLogErrors are what MinIO logs when its KMS cannot decrypt its config
// or IAM data at start-up.
var minioLogErrors = []string{
	"Unable to initialize config",
	"IAM sub-system is partially initialized",
	"Unable to initialize IAM sub-system",
}

// takeover is a Keep holding a KES fixture set's keys, and what the MinIO
// data directories must serve.
type takeover struct {
	fixture string // the set's directory
	man     *kesfixture.Manifest
	keep    *keepCluster
	sseKMS  string // an SSE-KMS key of the set, for new SSE-KMS objects
	sseS3   string // a bucket of the set with SSE-S3 by default, "" if none
}

// storedObject is what an object must read back as.
type storedObject struct {
	bucket, name string
	size         int64
	sha256       string // hex
	sse          string // "AES256", "aws:kms" or "" (not encrypted)
	key          string // SSE-KMS key
	etag         string // checked if not ""
}

func (o *storedObject) id() string { return o.bucket + "/" + o.name }

// dataDir is a copy of the set's MinIO data directory and what it must
// hold.
type dataDir struct {
	path    string
	objects map[string]*storedObject
}

// TestKESTakeover runs the pinned MinIO on copies of a KES fixture set's
// data directory against one Keep into which the set's keystore was
// imported: in KES mode, in MinIO KMS mode, and moved from KES mode to
// MinIO KMS mode. In each: MinIO starts cleanly (its config and IAM data
// decrypt), serves every object of the manifest, writes new objects, and
// reads old and new after a key rotation and after MinIO and Keep restart.
func TestKESTakeover(t *testing.T) {
	needMinIO(t)
	t.Parallel()
	x := newTakeover(t)
	kesKey := x.man.KMS.APIKey

	// KES mode: only the endpoint and the CA change; the API key and the
	// default key are the ones MinIO used with KES.
	kesDir := x.copyData(t)
	kesMode := newMinIO(t, "kes-mode", nil,
		"MINIO_KMS_KES_ENDPOINT="+x.keep.server(),
		"MINIO_KMS_KES_API_KEY="+kesKey,
		"MINIO_KMS_KES_KEY_NAME="+x.man.KMS.DefaultKey,
		"MINIO_KMS_KES_CAPATH="+x.keep.ca.File,
	)
	x.use(kesMode, kesDir)
	if !t.Run("KESMode", func(t *testing.T) { x.run(t, kesMode, kesDir, "kes-mode") }) {
		t.FailNow()
	}
	kesMode.stop()
	x.configUntouched(t, kesDir)

	minKMSEnv := []string{
		"MINIO_KMS_SERVER=" + x.keep.server(),
		"MINIO_KMS_API_KEY=" + x.man.KMS.APIKeyK1,
		"MINIO_KMS_ENCLAVE=" + takeoverEnclave,
		"MINIO_KMS_SSE_KEY=" + x.man.KMS.DefaultKey,
	}
	minKMSDir := x.copyData(t)
	minKMS := newMinIO(t, "minkms-mode", x.keep.ca, minKMSEnv...)
	x.use(minKMS, minKMSDir)
	if !t.Run("MinKMSMode", func(t *testing.T) { x.run(t, minKMS, minKMSDir, "minkms-mode") }) {
		t.FailNow()
	}
	minKMS.stop()

	// The move: the data directory the KES-mode MinIO wrote to, now served
	// in MinIO KMS mode by the same Keep.
	moved := newMinIO(t, "moved", x.keep.ca, minKMSEnv...)
	x.use(moved, kesDir)
	t.Run("KESToMinKMS", func(t *testing.T) {
		x.start(t, moved)
		c := moved.client(0)
		x.checkAll(t, c, kesDir)
		x.write(t, c, kesDir, "moved")
		x.checkAll(t, c, kesDir)
		checkMinIOLog(t, moved)
	})
}

// configUntouched checks that MinIO's config and IAM data are still as KES
// sealed them (manifest.json minio_internal[]): a MinIO that only ran on
// Keep did not re-seal them, so a roll back to KES can still read them
// (docs/migrate-from-kes.md).
func (x *takeover) configUntouched(t *testing.T, d *dataDir) {
	t.Helper()
	for _, in := range x.man.Internal {
		file := filepath.Join(filepath.FromSlash(in.Path), "xl.meta")
		now, err := os.ReadFile(filepath.Join(d.path, file))
		if err != nil {
			t.Errorf("MinIO's %s: %v", in.Path, err)
			continue
		}
		before, err := os.ReadFile(filepath.Join(x.fixture, "minio", file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(now, before) {
			t.Errorf("MinIO rewrote %s while it ran on Keep: a KES it is rolled back to could not read it", in.Path)
		}
	}
}

// newTakeover starts Keep, imports the fixture set's keystore into
// takeoverEnclave and registers the API key of the set's MinIO there with a
// policy allowing what MinIO does with every key the manifest names.
func newTakeover(t *testing.T) *takeover {
	t.Helper()
	dir := testnode.KESFixtureDir(t)
	x := &takeover{fixture: dir, man: kesfixture.LoadManifest(t, dir)}
	kesKey := x.man.KMS.APIKey
	if x.man.MinIO.Version != minioVersion {
		t.Logf("the fixture set was written by MinIO %s, this is %s: ETags are not compared", x.man.MinIO.Version, minioVersion)
	}
	if x.man.KMS.DefaultKey == "" || kesKey == "" || x.man.KMS.APIKeyK1 == "" {
		t.Fatalf("manifest.json: kms.default_key %q, kms.api_key %q, kms.api_key_k1 %q: all are needed", x.man.KMS.DefaultKey, kesKey, x.man.KMS.APIKeyK1)
	}
	for _, o := range x.man.Objects {
		if o.Encryption == "SSE-KMS" && (x.sseKMS == "" || o.KMSKey < x.sseKMS) {
			x.sseKMS = o.KMSKey
		}
	}
	if x.sseKMS == "" {
		x.sseKMS = x.man.KMS.DefaultKey
	}
	for _, b := range x.man.Buckets {
		if b.DefaultEncryption == "SSE-S3" && (x.sseS3 == "" || b.Name < x.sseS3) {
			x.sseS3 = b.Name
		}
	}

	x.keep = startKeep(t, newCA(t), keepOptions{nodes: 1, kesEnclave: takeoverEnclave})
	x.keep.must(t, nil, "add-enclave", takeoverEnclave)
	start := time.Now()
	x.importKeystore(t)
	t.Logf("imported %s/keystore in %v", dir, time.Since(start).Round(time.Millisecond))

	// The identity of MinIO's API key, with what it needs on every key of
	// the manifest: data keys, decryption, and describing keys (KES mode's
	// keep-alive and key status).
	keys := x.man.KeyNames()
	policy, err := json.Marshal(map[string]map[string][]string{"allow": {
		"KEY:GENERATE": keys,
		"KEY:DECRYPT":  keys,
		"KEY:STATUS":   keys,
	}})
	if err != nil {
		t.Fatal(err)
	}
	// What `keep identity` prints of MinIO's KES API key: its identity, and
	// the same key spelled for MINIO_KMS_API_KEY.
	out := x.keep.must(t, nil, "identity", kesKey)
	idLine, k1Line := identityLine.FindStringSubmatch(out), apiKeyLine.FindStringSubmatch(out)
	if idLine == nil || k1Line == nil || k1Line[1] != x.man.KMS.APIKeyK1 {
		t.Fatalf("keep identity %s printed no identity, or an API key other than kms.api_key_k1 %s:\n%s", kesKey, x.man.KMS.APIKeyK1, out)
	}
	id := idLine[1]
	x.keep.must(t, nil, "add-policy", "minio-takeover", writeFile(t, string(policy)), "-e", takeoverEnclave)
	x.keep.must(t, nil, "add-identity", id, "-e", takeoverEnclave)
	x.keep.must(t, nil, "set-policy", "minio-takeover", id, "-e", takeoverEnclave)
	return x
}

// importKeystore imports the set's keystore as the guide does: `keep
// import-kes --config kes-config.yml` from the set's directory, a dry run
// first; then again with --fs, which must find every key already there.
func (x *takeover) importKeystore(t *testing.T) {
	t.Helper()
	files := kesfixture.KeyFiles(t, x.fixture)
	env := append(testnode.BaseEnv(t.TempDir()),
		"MINIO_KMS_SERVER="+x.keep.server(),
		"MINIO_KMS_API_KEY="+x.keep.root,
		"SSL_CERT_FILE="+x.keep.ca.File,
	)
	for _, args := range [][]string{
		{"import-kes", "--config", "kes-config.yml", "-e", takeoverEnclave, "--dry-run"},
		{"import-kes", "--config", "kes-config.yml", "-e", takeoverEnclave},
		{"import-kes", "--fs", filepath.Join(x.fixture, "keystore"), "-e", takeoverEnclave},
	} {
		r := testnode.RunIn(t, x.fixture, env, args...)
		if r.Code != 0 {
			t.Fatalf("in %s: %v", x.fixture, r)
		}
		t.Logf("keep %s:\n%s", strings.Join(args, " "), r.Stdout)
		listed := x.keep.must(t, nil, "ls-key", "-e", takeoverEnclave)
		for _, f := range files {
			if in := regexpMatch(`(?m)^`+regexp.QuoteMeta(f.Name)+`\s`, listed); in == slices.Contains(args, "--dry-run") {
				t.Fatalf("after keep %s, key %s is listed: %v\n%s", strings.Join(args, " "), f.Name, in, listed)
			}
		}
	}
}

// copyData copies the set's minio/ directory to a new temporary directory,
// as `cp -a` does but writable: the shared set is read-only, and MinIO
// writes into its drive.
func (x *takeover) copyData(t *testing.T) *dataDir {
	t.Helper()
	src, dst := filepath.Join(x.fixture, "minio"), t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, data, info.Mode().Perm()|0o600); err != nil {
				return err
			}
			return os.Chtimes(target, info.ModTime(), info.ModTime())
		default:
			return nil // the set holds only regular files
		}
	})
	if err != nil {
		t.Fatalf("copying %s: %v", src, err)
	}
	d := &dataDir{path: dst, objects: make(map[string]*storedObject)}
	for _, o := range x.man.Objects {
		so := &storedObject{bucket: o.Bucket, name: o.Name, size: o.Size, sha256: o.SHA256}
		switch o.Encryption {
		case "SSE-S3":
			so.sse = sseS3
		case "SSE-KMS":
			so.sse, so.key = sseKMS, o.KMSKey
		}
		if x.man.MinIO.Version == minioVersion {
			so.etag = o.ETag
		}
		d.objects[so.id()] = so
	}
	return d
}

// use points m at the data directory d with the set's root credentials.
func (x *takeover) use(m *minioServer, d *dataDir) {
	m.dir = d.path
	m.user, m.password = x.man.MinIO.RootUser, x.man.MinIO.RootPassword
}

// run is the life of one MinIO on its own copy: start, read everything,
// write, rotate the keys, restart MinIO, restart Keep.
func (x *takeover) run(t *testing.T, m *minioServer, d *dataDir, prefix string) {
	var c *minio.Client
	steps := []takeoverStep{
		{"Start", func(t *testing.T) {
			x.start(t, m)
			c = m.client(0)
			x.checkAll(t, c, d)
			checkMinIOLog(t, m)
		}},
		{"Write", func(t *testing.T) {
			x.write(t, c, d, prefix+"/before-rotation")
			x.checkAll(t, c, d)
		}},
		{"KeyRotation", func(t *testing.T) {
			for _, k := range slices.Compact([]string{x.man.KMS.DefaultKey, x.sseKMS}) {
				x.keep.must(t, nil, "add-key", k, "--version", "-e", takeoverEnclave)
			}
			x.checkAll(t, c, d)
			x.write(t, c, d, prefix+"/after-rotation")
			x.checkAll(t, c, d)
		}},
		{"MinIORestart", func(t *testing.T) {
			m.restart()
			x.checkAll(t, c, d)
			checkMinIOLog(t, m)
		}},
		{"KeepRestart", func(t *testing.T) {
			x.keep.stop()
			if err := x.keep.start(); err != nil {
				t.Fatal(err)
			}
			m.waitReady(t)
			x.checkAll(t, c, d)
			x.write(t, c, d, prefix+"/after-keep-restart")
			x.checkAll(t, c, d)
			checkMinIOLog(t, m)
		}},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.fn) {
			t.FailNow()
		}
	}
}

// takeoverStep is a step of takeover.run.
type takeoverStep struct {
	name string
	fn   func(*testing.T)
}

// start starts m and logs how long MinIO took.
func (x *takeover) start(t *testing.T, m *minioServer) {
	t.Helper()
	start := time.Now()
	m.mustStart()
	t.Logf("MinIO %s ready in %v", m.name, time.Since(start).Round(time.Millisecond))
}

// write puts one object with the bucket's default SSE-S3 (or SSE-S3
// headers if the set has no such bucket) and one with SSE-KMS and a key of
// the set, under prefix, and reads them back.
func (x *takeover) write(t *testing.T, c *minio.Client, d *dataDir, prefix string) {
	t.Helper()
	bucket := x.sseS3
	var s3 encrypt.ServerSide
	if bucket == "" {
		bucket, s3 = x.man.Buckets[0].Name, encrypt.NewSSE()
	}
	x.put(t, c, d, &storedObject{bucket: bucket, name: prefix + "/sse-s3.bin", sse: sseS3}, s3, 10_000)
	x.put(t, c, d, &storedObject{bucket: x.man.Buckets[0].Name, name: prefix + "/sse-kms.bin", sse: sseKMS, key: x.sseKMS}, sseKMSWith(t, x.sseKMS), 3_000)
}

func (x *takeover) put(t *testing.T, c *minio.Client, d *dataDir, o *storedObject, sse encrypt.ServerSide, size int) {
	t.Helper()
	data := randomBytes(t, size)
	if _, err := c.PutObject(context.Background(), o.bucket, o.name, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ServerSideEncryption: sse, DisableMultipart: true}); err != nil {
		t.Fatalf("PUT %s: %v", o.id(), err)
	}
	sum := sha256.Sum256(data)
	o.size, o.sha256 = int64(size), hex.EncodeToString(sum[:])
	d.objects[o.id()] = o
	checkStored(t, c, o)
}

// checkAll checks every object d must hold.
func (x *takeover) checkAll(t *testing.T, c *minio.Client, d *dataDir) {
	t.Helper()
	ids := make([]string, 0, len(d.objects))
	for id := range d.objects {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	start := time.Now()
	for _, id := range ids {
		checkStored(t, c, d.objects[id])
	}
	t.Logf("read %d objects in %v", len(ids), time.Since(start).Round(time.Millisecond))
}

// checkStored checks the encryption headers, the ETag and size HEAD
// reports, and the SHA-256 of what GET returns.
func checkStored(t *testing.T, c *minio.Client, o *storedObject) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	info, err := c.StatObject(ctx, o.bucket, o.name, minio.StatObjectOptions{})
	if err != nil {
		t.Errorf("HEAD %s: %v", o.id(), err)
		return
	}
	if got := info.Metadata.Get(headerSSE); got != o.sse {
		t.Errorf("HEAD %s: %s %q, want %q", o.id(), headerSSE, got, o.sse)
	}
	if got := info.Metadata.Get(headerKey); o.key != "" && !strings.HasSuffix(got, o.key) {
		t.Errorf("HEAD %s: %s %q, want …%s", o.id(), headerKey, got, o.key)
	}
	if o.etag != "" && info.ETag != o.etag {
		t.Errorf("HEAD %s: ETag %q, want %q (what the MinIO that wrote it served)", o.id(), info.ETag, o.etag)
	}
	if info.Size != o.size {
		t.Errorf("HEAD %s: size %d, want %d", o.id(), info.Size, o.size)
	}
	r, err := c.GetObject(ctx, o.bucket, o.name, minio.GetObjectOptions{})
	if err != nil {
		t.Errorf("GET %s: %v", o.id(), err)
		return
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Errorf("GET %s: %v", o.id(), err)
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != o.size || got != o.sha256 {
		t.Errorf("GET %s: %d bytes with SHA-256 %s, want %d bytes with %s", o.id(), n, got, o.size, o.sha256)
	}
}

// checkMinIOLog fails the test if MinIO's current run logged that it could
// not decrypt its config or IAM data.
func checkMinIOLog(t *testing.T, m *minioServer) {
	t.Helper()
	out := m.Stdout()
	for _, bad := range minioLogErrors {
		if strings.Contains(out, bad) {
			t.Errorf("MinIO %s logged %q:\n%s", m.name, bad, testnode.Tail(out, 8<<10))
		}
	}
}
