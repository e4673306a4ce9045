package miniotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/encrypt"
	"github.com/minio/minio-go/v7/pkg/sse"

	"github.com/keep-kms/keep/test/testnode"
)

const (
	bucket    = "data"
	rotKey    = "rotated-key" // a named key whose first version is deleted after a rotation
	partSize  = 5 << 20       // the smallest part S3 allows but the last
	sseS3     = "AES256"      // X-Amz-Server-Side-Encryption of SSE-S3
	sseKMS    = "aws:kms"     // X-Amz-Server-Side-Encryption of SSE-KMS
	headerSSE = "X-Amz-Server-Side-Encryption"
	headerKey = "X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"
)

// TestMinKMS runs MinIO with a one-node Keep as its KMS through the MinIO
// KMS API: MINIO_KMS_SERVER, MINIO_KMS_API_KEY (Admin of a dedicated
// enclave), MINIO_KMS_ENCLAVE, MINIO_KMS_SSE_KEY.
func TestMinKMS(t *testing.T) {
	needMinIO(t)
	t.Parallel()
	ca := newCA(t)
	keep := startKeep(t, ca, keepOptions{nodes: 1})
	runMinKMS(t, keep)
}

// TestMinKMSCluster is TestMinKMS against a three-node Keep cluster formed
// with `keep add`, every node in MINIO_KMS_SERVER.
func TestMinKMSCluster(t *testing.T) {
	needMinIO(t)
	t.Parallel()
	ca := newCA(t)
	keep := startKeep(t, ca, keepOptions{nodes: 3})
	runMinKMS(t, keep)
}

func runMinKMS(t *testing.T, keep *keepCluster) {
	const enclave, defaultKey = "minio", "minio-default-key"
	apiKey := keep.addEnclaveAdmin(t, enclave)
	m := newMinIO(t, "minkms", keep.ca,
		"MINIO_KMS_SERVER="+keep.server(),
		"MINIO_KMS_API_KEY="+apiKey,
		"MINIO_KMS_ENCLAVE="+enclave,
		"MINIO_KMS_SSE_KEY="+defaultKey,
	)
	runScenario(t, &scenario{keep: keep, minio: m, enclave: enclave, defaultKey: defaultKey})
}

// TestKES runs MinIO with Keep as its KMS through the KES API on the same
// port: MINIO_KMS_KES_ENDPOINT, MINIO_KMS_KES_API_KEY (kes:v1:…, Admin of
// the enclave the config's kes.enclave names), MINIO_KMS_KES_KEY_NAME,
// MINIO_KMS_KES_CAPATH.
func TestKES(t *testing.T) {
	needMinIO(t)
	t.Parallel()
	runKES(t, 1)
}

// TestKESCluster is TestKES against a three-node Keep cluster, every node
// in MINIO_KMS_KES_ENDPOINT.
func TestKESCluster(t *testing.T) {
	needMinIO(t)
	t.Parallel()
	runKES(t, 3)
}

func runKES(t *testing.T, nodes int) {
	const enclave, defaultKey = "minio-kes", "minio-default-key"
	keep := startKeep(t, newCA(t), keepOptions{nodes: nodes, kesEnclave: enclave})
	apiKey := keep.addKESAdmin(t, enclave)
	m := newMinIO(t, "kes", nil,
		"MINIO_KMS_KES_ENDPOINT="+keep.server(),
		"MINIO_KMS_KES_API_KEY="+apiKey,
		"MINIO_KMS_KES_KEY_NAME="+defaultKey,
		"MINIO_KMS_KES_CAPATH="+keep.ca.File,
	)
	runScenario(t, &scenario{keep: keep, minio: m, enclave: enclave, defaultKey: defaultKey})
}

func writeFile(t testing.TB, content string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "file")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// scenario is MinIO configured with Keep as its KMS, in either mode.
type scenario struct {
	keep       *keepCluster
	minio      *minioServer
	enclave    string // where MinIO's keys live
	defaultKey string // MINIO_KMS_SSE_KEY / MINIO_KMS_KES_KEY_NAME
	kmsKey     string // a named key for SSE-KMS, created in Keep

	c       *minio.Client
	objects map[string]*object // what the bucket must hold
}

// object is what an object must read back as.
type object struct {
	data []byte
	sse  string // "AES256" or "aws:kms"
	key  string // the SSE-KMS key
}

func (s *scenario) keepCLI(t *testing.T, args ...string) string {
	t.Helper()
	return s.keep.must(t, nil, append(args, "-e", s.enclave)...)
}

type step struct {
	name string
	fn   func(*scenario, *testing.T)
}

// allSteps is the whole scenario, in order.
var allSteps = []step{
	{"Start", (*scenario).start},
	{"BucketEncryption", (*scenario).bucketEncryption},
	{"SSE-S3", (*scenario).sseS3},
	{"SSE-S3-Multipart", (*scenario).sseS3Multipart},
	{"SSE-S3-Copy", (*scenario).sseS3Copy},
	{"SSE-KMS", (*scenario).sseKMS},
	{"MinIORestart", (*scenario).minioRestart},
	{"KeyRotation", (*scenario).keyRotation},
	{"KeepDown", (*scenario).keepDown},
	{"KeepUp", (*scenario).keepUp},
}

// runScenario runs the steps (default allSteps) one after another; a
// failed step ends it.
func runScenario(t *testing.T, s *scenario, steps ...step) {
	s.objects = map[string]*object{}
	if s.kmsKey == "" {
		s.kmsKey = "sse-kms-key"
	}
	if steps == nil {
		steps = allSteps
	}
	for _, st := range steps {
		if !t.Run(st.name, func(t *testing.T) { st.fn(s, t) }) {
			t.FailNow()
		}
	}
}

// start starts MinIO, which creates its default key in Keep since it does
// not exist yet.
func (s *scenario) start(t *testing.T) {
	if out := s.keepCLI(t, "ls-key"); strings.Contains(out, s.defaultKey) {
		t.Fatalf("default key exists before MinIO started:\n%s", out)
	}
	s.minio.mustStart()
	s.c = s.minio.client(0)
	// On every node: a cluster replicates the key MinIO created.
	for _, n := range s.keep.nodes {
		if out := s.keep.must(t, []*testnode.Node{n}, "ls-key", "-e", s.enclave); !strings.Contains(out, s.defaultKey) {
			t.Fatalf("MinIO did not create its default key %s in enclave %s; keep ls-key on %s:\n%s", s.defaultKey, s.enclave, n.Name, out)
		}
	}
	if code, err := s.minio.ready(time.Minute); code != http.StatusOK {
		t.Fatalf("/minio/health/ready: %d %v", code, err)
	}
}

// bucketEncryption does what `mc encrypt set sse-s3` does.
func (s *scenario) bucketEncryption(t *testing.T) {
	ctx := context.Background()
	if err := s.c.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.c.SetBucketEncryption(ctx, bucket, sse.NewConfigurationSSES3()); err != nil {
		t.Fatal(err)
	}
	conf, err := s.c.GetBucketEncryption(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if len(conf.Rules) != 1 || conf.Rules[0].Apply.SSEAlgorithm != sseS3 {
		t.Fatalf("bucket encryption = %+v, want one rule with %s", conf, sseS3)
	}
}

// sseS3 puts objects without encryption headers: the bucket's default
// encrypts them with SSE-S3.
func (s *scenario) sseS3(t *testing.T) {
	for name, size := range map[string]int{"empty": 0, "one-byte": 1, "small": 4 << 10, "odd": 100_003} {
		s.put(t, name, randomBytes(t, size), nil)
	}
	s.checkAll(t)
}

func (s *scenario) sseS3Multipart(t *testing.T) {
	s.putMultipart(t, "multipart", []int{partSize, partSize, 1<<20 + 17}, nil)
	// A range across the first part boundary.
	want := s.objects["multipart"].data[partSize-100 : partSize+100]
	opts := minio.GetObjectOptions{}
	if err := opts.SetRange(partSize-100, partSize+99); err != nil {
		t.Fatal(err)
	}
	got := s.get(t, "multipart", opts)
	if !bytes.Equal(got, want) {
		t.Fatalf("range across the part boundary: got %d bytes, differing from the %d put", len(got), len(want))
	}
}

func (s *scenario) sseS3Copy(t *testing.T) {
	for _, src := range []string{"small", "multipart"} {
		s.copy(t, src, src+"-copy", nil)
	}
	s.checkAll(t)
}

// sseKMS puts, copies and uploads in parts with SSE-KMS and a key created
// in Keep.
func (s *scenario) sseKMS(t *testing.T) {
	s.keepCLI(t, "add-key", s.kmsKey)
	kms := sseKMSWith(t, s.kmsKey)
	s.put(t, "kms-small", randomBytes(t, 4<<10), kms)
	s.putMultipart(t, "kms-multipart", []int{partSize, 3 << 20}, kms)
	s.copy(t, "small", "small-to-kms", kms)               // SSE-S3 → SSE-KMS
	s.copy(t, "kms-small", "kms-to-default", nil)         // SSE-KMS → bucket default (SSE-S3)
	s.copy(t, "kms-multipart", "kms-multipart-copy", kms) // SSE-KMS → SSE-KMS
	s.checkAll(t)

	// A key Keep does not have: MinIO refuses the PUT.
	_, err := s.c.PutObject(context.Background(), bucket, "no-such-key", bytes.NewReader([]byte("x")), 1,
		minio.PutObjectOptions{ServerSideEncryption: sseKMSWith(t, "no-such-key")})
	if err == nil {
		t.Fatal("PUT with SSE-KMS and a key Keep does not have succeeded")
	}
	t.Logf("PUT with a missing SSE-KMS key: %v (code %s)", err, minio.ToErrorResponse(err).Code)
}

// minioRestart restarts MinIO: it must come up again (its config and IAM
// data are encrypted with the default key) and read every object.
func (s *scenario) minioRestart(t *testing.T) {
	s.minio.restart()
	s.checkAll(t)
}

// keyRotation adds a version to the keys in Keep: old objects still
// decrypt, new ones are encrypted with the new version.
func (s *scenario) keyRotation(t *testing.T) {
	s.keepCLI(t, "add-key", s.defaultKey, "--version")
	s.keepCLI(t, "add-key", s.kmsKey, "--version")
	for _, k := range []string{s.defaultKey, s.kmsKey} {
		if out := s.keepCLI(t, "stat-key", k); !regexpMatch(`(?m)^Version\s+2\s*$`, out) {
			t.Fatalf("keep stat-key %s after the rotation:\n%s", k, out)
		}
	}
	s.checkAll(t)
	s.put(t, "after-rotation", randomBytes(t, 10_000), nil)
	s.put(t, "kms-after-rotation", randomBytes(t, 10_000), sseKMSWith(t, s.kmsKey))
	s.putMultipart(t, "multipart-after-rotation", []int{partSize, 1 << 20}, nil)
	s.checkAll(t)

	// New objects use the new version: with a dedicated key, an object put
	// after the rotation still decrypts once version 1 is deleted, and one
	// put before does not.
	s.keepCLI(t, "add-key", rotKey)
	rot := sseKMSWith(t, rotKey)
	s.put(t, "rot-v1", randomBytes(t, 1000), rot)
	s.keepCLI(t, "add-key", rotKey, "--version")
	s.put(t, "rot-v2", randomBytes(t, 1000), rot)
	s.checkAll(t)
	s.keepCLI(t, "rm-key", rotKey, "-v", "1", "--window", "0s")
	s.checkObject(t, "rot-v2")
	if _, err := s.tryGet("rot-v1"); err == nil {
		t.Fatal("object rot-v1, put before the rotation, still decrypts after version 1 of its key was deleted")
	} else {
		t.Logf("GET rot-v1 after deleting version 1: %v", err)
	}
	delete(s.objects, "rot-v1")
}

// keepDown stops Keep: MinIO is no longer ready and encrypted objects no
// longer read. With a cluster, MinIO first keeps working with one node
// down.
func (s *scenario) keepDown(t *testing.T) {
	if n := len(s.keep.nodes); n > 1 {
		s.keep.nodes[0].Stop()
		t.Logf("stopped %s; %d of %d nodes up", s.keep.nodes[0].Name, n-1, n)
		start := time.Now()
		if code, err := s.minio.ready(90 * time.Second); code != http.StatusOK {
			t.Fatalf("/minio/health/ready with one Keep node down: %d %v", code, err)
		}
		t.Logf("/minio/health/ready with one node down: 200 after %v", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		s.checkAll(t)
		s.put(t, "one-node-down", randomBytes(t, 5000), nil)
		t.Logf("read %d objects and put one with one node down in %v", len(s.objects)-1, time.Since(start).Round(time.Millisecond))
	}
	s.keep.stop()

	start := time.Now()
	code, err := s.minio.ready(90 * time.Second)
	if code == http.StatusOK {
		t.Fatal("/minio/health/ready answers 200 with Keep stopped")
	}
	t.Logf("/minio/health/ready with Keep stopped: %d %v (after %v)", code, err, time.Since(start).Round(time.Millisecond))

	c := s.minio.client(1) // no retries: the failures are expected
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, name := range []string{"small", "multipart", "kms-small"} {
		start := time.Now()
		r, err := c.GetObject(ctx, bucket, name, minio.GetObjectOptions{})
		if err == nil {
			_, err = io.ReadAll(r)
			r.Close()
		}
		if err == nil {
			t.Errorf("GET %s succeeded with Keep stopped", name)
		} else {
			t.Logf("GET %s with Keep stopped: %v (after %v)", name, err, time.Since(start).Round(time.Millisecond))
		}
	}
	if _, err := c.PutObject(ctx, bucket, "keep-down", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err == nil {
		t.Error("PUT to the auto-encrypted bucket succeeded with Keep stopped")
	}
	// HEAD reads only metadata: it needs no key.
	if info, err := c.StatObject(ctx, bucket, "small", minio.StatObjectOptions{}); err != nil {
		t.Errorf("HEAD small with Keep stopped: %v", err)
	} else if got := info.Metadata.Get(headerSSE); got != sseS3 {
		t.Errorf("HEAD small with Keep stopped: %s: %q, want %q", headerSSE, got, sseS3)
	}
}

// keepUp starts Keep again: MinIO becomes ready and reads everything.
func (s *scenario) keepUp(t *testing.T) {
	if err := s.keep.start(); err != nil {
		t.Fatal(err)
	}
	s.minio.waitReady(t)
	s.checkAll(t)
	s.put(t, "after-keep-restart", randomBytes(t, 3000), nil)
	s.put(t, "kms-after-keep-restart", randomBytes(t, 3000), sseKMSWith(t, s.kmsKey))
	s.checkAll(t)
}

// put puts an object in one request (with SSE-KMS if kms is not nil) and
// checks it.
func (s *scenario) put(t *testing.T, name string, data []byte, kms encrypt.ServerSide) {
	t.Helper()
	_, err := s.c.PutObject(context.Background(), bucket, name, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ServerSideEncryption: kms, DisableMultipart: true})
	if err != nil {
		t.Fatalf("PUT %s: %v", name, err)
	}
	s.expect(name, data, kms)
	s.checkObject(t, name)
}

// putMultipart uploads an object in parts of the given sizes.
func (s *scenario) putMultipart(t *testing.T, name string, parts []int, kms encrypt.ServerSide) {
	t.Helper()
	ctx := context.Background()
	core := minio.Core{Client: s.c}
	id, err := core.NewMultipartUpload(ctx, bucket, name, minio.PutObjectOptions{ServerSideEncryption: kms})
	if err != nil {
		t.Fatalf("create multipart upload %s: %v", name, err)
	}
	var (
		data     []byte
		complete []minio.CompletePart
	)
	for i, size := range parts {
		p := randomBytes(t, size)
		part, err := core.PutObjectPart(ctx, bucket, name, id, i+1, bytes.NewReader(p), int64(size), minio.PutObjectPartOptions{})
		if err != nil {
			t.Fatalf("upload part %d of %s: %v", i+1, name, err)
		}
		complete = append(complete, minio.CompletePart{PartNumber: i + 1, ETag: part.ETag})
		data = append(data, p...)
	}
	if _, err := core.CompleteMultipartUpload(ctx, bucket, name, id, complete, minio.PutObjectOptions{}); err != nil {
		t.Fatalf("complete multipart upload %s: %v", name, err)
	}
	s.expect(name, data, kms)
	s.checkObject(t, name)
}

// copy copies src to dst on the server, with SSE-KMS if kms is not nil,
// else with the bucket's default (SSE-S3).
func (s *scenario) copy(t *testing.T, src, dst string, kms encrypt.ServerSide) {
	t.Helper()
	_, err := s.c.CopyObject(context.Background(),
		minio.CopyDestOptions{Bucket: bucket, Object: dst, Encryption: kms},
		minio.CopySrcOptions{Bucket: bucket, Object: src})
	if err != nil {
		t.Fatalf("COPY %s to %s: %v", src, dst, err)
	}
	s.expect(dst, s.objects[src].data, kms)
	s.checkObject(t, dst)
}

func (s *scenario) expect(name string, data []byte, kms encrypt.ServerSide) {
	o := &object{data: data, sse: sseS3}
	if kms != nil {
		o.sse = sseKMS
		o.key = kms.(interface{ keyID() string }).keyID()
	}
	s.objects[name] = o
}

// checkAll checks every object the bucket must hold.
func (s *scenario) checkAll(t *testing.T) {
	t.Helper()
	names := make([]string, 0, len(s.objects))
	for n := range s.objects {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.checkObject(t, n)
	}
}

// checkObject checks that HEAD reports the object's encryption and that
// GET returns its data.
func (s *scenario) checkObject(t *testing.T, name string) {
	t.Helper()
	want := s.objects[name]
	info, err := s.c.StatObject(context.Background(), bucket, name, minio.StatObjectOptions{})
	if err != nil {
		t.Fatalf("HEAD %s: %v", name, err)
	}
	if got := info.Metadata.Get(headerSSE); got != want.sse {
		t.Errorf("HEAD %s: %s: %q, want %q", name, headerSSE, got, want.sse)
	}
	if want.key != "" {
		if got := info.Metadata.Get(headerKey); !strings.HasSuffix(got, want.key) {
			t.Errorf("HEAD %s: %s: %q, want …%s", name, headerKey, got, want.key)
		}
	}
	if info.Size != int64(len(want.data)) {
		t.Errorf("HEAD %s: size %d, want %d", name, info.Size, len(want.data))
	}
	got := s.get(t, name, minio.GetObjectOptions{})
	if !bytes.Equal(got, want.data) {
		t.Fatalf("GET %s: got %d bytes, differing from the %d put", name, len(got), len(want.data))
	}
}

func (s *scenario) get(t *testing.T, name string, opts minio.GetObjectOptions) []byte {
	t.Helper()
	r, err := s.c.GetObject(context.Background(), bucket, name, opts)
	if err != nil {
		t.Fatalf("GET %s: %v", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("GET %s: %v", name, err)
	}
	return b
}

func (s *scenario) tryGet(name string) ([]byte, error) {
	r, err := s.minio.client(1).GetObject(context.Background(), bucket, name, minio.GetObjectOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// sseKMSOpt is SSE-KMS with a key and an encryption context, as a client
// sets it, that remembers its key for the checks.
type sseKMSOpt struct {
	encrypt.ServerSide
	key string
}

func (o sseKMSOpt) keyID() string { return o.key }

// sseKMSWith returns SSE-KMS with key and the context
// {"application":"keep-test"}.
func sseKMSWith(t testing.TB, key string) encrypt.ServerSide {
	t.Helper()
	kms, err := encrypt.NewSSEKMS(key, map[string]string{"application": "keep-test"})
	if err != nil {
		t.Fatal(err)
	}
	return sseKMSOpt{ServerSide: kms, key: key}
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// minioPolicy is what MinIO needs as a User identity (docs/minio.md): data
// keys from and decryption with its keys, creating its default key on
// first start, listing keys (mc admin kms key list) and, in KES mode,
// describing its default key (MinIO's keep-alive).
const minioPolicy = `{
  "allow": {
    "KEY:CREATE":   ["minio-default-key"],
    "KEY:GENERATE": ["minio-*"],
    "KEY:DECRYPT":  ["minio-*"],
    "KEY:STATUS":   ["minio-*"],
    "KEY:LIST":     ["*"]
  }
}`

// userSteps is the scenario of a User identity with minioPolicy.
var userSteps = []step{
	{"Start", (*scenario).start},
	{"BucketEncryption", (*scenario).bucketEncryption},
	{"SSE-S3", (*scenario).sseS3},
	{"SSE-S3-Multipart", (*scenario).sseS3Multipart},
	{"SSE-KMS", (*scenario).sseKMS},
	{"MinIORestart", (*scenario).minioRestart},
	{"PolicyDenies", (*scenario).policyDenies},
}

// TestMinKMSUser runs MinIO in the MinIO KMS mode with a User identity
// whose policy is minioPolicy instead of an Admin.
func TestMinKMSUser(t *testing.T) {
	needMinIO(t)
	t.Parallel()
	const enclave, defaultKey = "tenant", "minio-default-key"
	ca := newCA(t)
	keep := startKeep(t, ca, keepOptions{nodes: 1})
	apiKey := keep.addUser(t, enclave, "minio", minioPolicy, false)
	m := newMinIO(t, "minkms-user", keep.ca,
		"MINIO_KMS_SERVER="+keep.server(),
		"MINIO_KMS_API_KEY="+apiKey,
		"MINIO_KMS_ENCLAVE="+enclave,
		"MINIO_KMS_SSE_KEY="+defaultKey,
	)
	runScenario(t, &scenario{keep: keep, minio: m, enclave: enclave, defaultKey: defaultKey, kmsKey: "minio-sse-kms-key"}, userSteps...)
}

// TestKESUser runs MinIO in the KES mode with a User identity whose policy
// is minioPolicy.
func TestKESUser(t *testing.T) {
	needMinIO(t)
	t.Parallel()
	const enclave, defaultKey = "tenant-kes", "minio-default-key"
	ca := newCA(t)
	keep := startKeep(t, ca, keepOptions{nodes: 1, kesEnclave: enclave})
	apiKey := keep.addUser(t, enclave, "minio", minioPolicy, true)
	m := newMinIO(t, "kes-user", nil,
		"MINIO_KMS_KES_ENDPOINT="+keep.server(),
		"MINIO_KMS_KES_API_KEY="+apiKey,
		"MINIO_KMS_KES_KEY_NAME="+defaultKey,
		"MINIO_KMS_KES_CAPATH="+keep.ca.File,
	)
	runScenario(t, &scenario{keep: keep, minio: m, enclave: enclave, defaultKey: defaultKey, kmsKey: "minio-sse-kms-key"}, userSteps...)
}

// policyDenies checks that the policy holds: a key outside it cannot be
// used for SSE-KMS, though it exists.
func (s *scenario) policyDenies(t *testing.T) {
	s.keepCLI(t, "add-key", "other-key")
	_, err := s.c.PutObject(context.Background(), bucket, "other-key", bytes.NewReader([]byte("x")), 1,
		minio.PutObjectOptions{ServerSideEncryption: sseKMSWith(t, "other-key")})
	if err == nil {
		t.Fatal("PUT with SSE-KMS and a key outside the identity's policy succeeded")
	}
	t.Logf("PUT with SSE-KMS and a key outside the policy: %v (code %s)", err, minio.ToErrorResponse(err).Code)
}
