// Package minio runs a real MinIO server against real Keep nodes: MinIO
// uses Keep as its KMS, through the MinIO KMS API (MINIO_KMS_SERVER …) and
// through the KES API (MINIO_KMS_KES_ENDPOINT …), and is driven with
// minio-go. TestKESTakeover starts it on a copy of the data directory of a
// KES fixture set (test/kesfixture), whose keystore was imported into Keep
// with keep import-kes: MinIO taking over from KES. BenchmarkMinIOPut compares small-object PUTs with Keep as the KMS
// to the same MinIO with a static key.
//
// TestMain installs the pinned MinIO release once: it builds it from its Go
// module with `go install` (several minutes the first time) and caches the
// binary as minio-<version> in os.UserCacheDir()/keep-test. With -short the
// tests skip instead. KEEP_MINIO_BINARY names a prebuilt minio binary to
// test instead; KEEP_BINARY a prebuilt keep binary (see test/testnode).
package miniotest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keep-kms/keep/test/testnode"
)

// The MinIO server under test: github.com/minio/minio at this version (the
// module version MinIO's RELEASE.2026-02-12 tree builds as). Its go.mod pins
// the same kms-go as Keep.
const (
	minioModule  = "github.com/minio/minio"
	minioVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"
)

// minioBinary is the path of the minio binary, set by TestMain; empty with
// -short (the tests skip) or when the installation failed.
var minioBinary string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Fprintln(os.Stderr, "test/minio: -short: not installing MinIO; the MinIO tests skip")
		os.Exit(m.Run())
	}
	bin, err := installMinIO(buildBudget())
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/minio:", err)
		os.Exit(1)
	}
	minioBinary = bin
	os.Exit(testnode.Main(m))
}

// needMinIO skips the test with -short.
func needMinIO(tb testing.TB) {
	tb.Helper()
	if minioBinary == "" {
		tb.Skip("-short: MinIO is not installed; run without -short to build it (go install " + minioModule + "@" + minioVersion + ")")
	}
}

// testReserve is the time the tests themselves need after the build
// (measured 2.5 min under -race on a loaded 2-core machine, with margin).
const testReserve = 4 * time.Minute

// buildBudget is how long building MinIO may take so that the tests still
// finish before go test kills the test binary (at -timeout plus one
// minute; the -timeout alarm itself only starts with m.Run). 0: no limit.
func buildBudget() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	timeout, _ := f.Value.(flag.Getter).Get().(time.Duration)
	if timeout <= 0 {
		return 0
	}
	return max(timeout+time.Minute-testReserve, time.Minute)
}

// installMinIO returns the path of a minio binary of minioVersion, built
// from the Go module the first time and cached afterwards. The build fails
// if it takes longer than budget (unless 0); what it compiled so far stays
// in the Go build cache for the next run.
func installMinIO(budget time.Duration) (string, error) {
	if bin := os.Getenv("KEEP_MINIO_BINARY"); bin != "" {
		return bin, nil
	}
	dir, err := minioCacheDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "minio-"+minioVersion)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
		return path, nil
	}

	// go install into a fresh GOBIN next to the cache, then rename: another
	// test process building at the same time never sees half a binary.
	gobin, err := os.MkdirTemp(dir, ".minio-build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(gobin)
	work, err := os.MkdirTemp("", "minio-install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)

	ctx := context.Background()
	if budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	// As MinIO's release builds: no cgo, no symbol table or DWARF (which
	// also makes the link several times faster).
	args := []string{"install", "-ldflags=-s -w", minioModule + "@" + minioVersion}
	fmt.Fprintf(os.Stderr, "test/minio: building MinIO into %s: CGO_ENABLED=0 go %s (a few minutes the first time)\n", path, strings.Join(args, " "))
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = work // outside any module: go install PKG@VERSION uses only MinIO's go.mod
	cmd.Env = append(withoutEnv(os.Environ(), "GOBIN", "GOFLAGS", "GOWORK", "CGO_ENABLED"),
		"GOBIN="+gobin, "GOWORK=off", "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0")
	cmd.SysProcAttr = sysProcAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return "", fmt.Errorf("building MinIO took longer than %v, which would leave the tests too little of go test's -timeout: "+
			"run again (the Go build cache keeps what was compiled), raise -timeout, or set KEEP_MINIO_BINARY\n%s", budget, testnode.Tail(string(out), 4<<10))
	}
	if err != nil {
		return "", fmt.Errorf("go install %s@%s: %v\n%s", minioModule, minioVersion, err, out)
	}
	if err := os.Rename(filepath.Join(gobin, "minio"), path); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "test/minio: built %s in %v\n", path, time.Since(start).Round(time.Second))
	return path, nil
}

// minioCacheDir is where the minio binary is cached:
// os.UserCacheDir()/keep-test, else $(go env GOPATH)/bin.
func minioCacheDir() (string, error) {
	if c, err := os.UserCacheDir(); err == nil {
		dir := filepath.Join(c, "keep-test")
		if err := os.MkdirAll(dir, 0o755); err == nil {
			return dir, nil
		}
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("no cache directory for the minio binary: go env GOPATH: %v", err)
	}
	gopath := strings.TrimSpace(strings.Split(string(out), string(os.PathListSeparator))[0])
	dir := filepath.Join(gopath, "bin")
	return dir, os.MkdirAll(dir, 0o755)
}

// withoutEnv returns env without the variables named.
func withoutEnv(env []string, names ...string) []string {
	var out []string
next:
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		for _, n := range names {
			if k == n {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}
