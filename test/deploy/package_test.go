package deploy

// Tests of the container image (deploy/container/Dockerfile) and of the
// systemd unit (deploy/systemd/keep.service): the image is built with
// podman from Debian's packages and run, the unit is checked with
// systemd-analyze. Both install their tools with apt-get when missing and
// the test runs as root (as CI does; test/aptget).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keep-kms/keep/test/aptget"
	"github.com/keep-kms/keep/test/softhsm"
	"github.com/keep-kms/keep/test/testnode"
)

// repoFile is the path of a file of the repository.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := testnode.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, filepath.FromSlash(rel))
}

// podman runs podman with its own storage under dir, so that a test run
// neither sees nor leaves images and containers of the machine's. vfs
// storage works wherever the test runs (overlay does not nest), runc runs
// the containers (crun refuses the hybrid cgroup hierarchy of some
// machines), and without systemd the cgroups are podman's own.
type podman struct {
	t    *testing.T
	args []string
}

func newPodman(t *testing.T) *podman {
	dir, err := os.MkdirTemp("", "keep-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &podman{t: t, args: []string{
		"--root", filepath.Join(dir, "root"),
		"--runroot", filepath.Join(dir, "run"),
		"--storage-driver", "vfs",
		"--runtime", "runc",
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
		"--tmpdir", filepath.Join(dir, "tmp"),
	}}
	t.Cleanup(func() {
		// Containers first: their processes hold files in the storage.
		p.try(context.Background(), "rm", "--all", "--force", "--time", "0")
		// conmon runs podman's cleanup of an exited container on its
		// own, which may still write to the storage for a moment.
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if err = os.RemoveAll(dir); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Errorf("podman storage %s: %v", dir, err)
		}
	})
	return p
}

// try runs podman with args and returns its stdout, stderr and error.
func (p *podman) try(ctx context.Context, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append(append([]string(nil), p.args...), args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, testnode.Tail(e.String(), 2048))
	}
	return o.String(), e.String(), err
}

// run runs podman with args and returns its trimmed stdout; it fails the
// test if podman fails.
func (p *podman) run(args ...string) string {
	p.t.Helper()
	out, _, err := p.try(context.Background(), args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// rlimits are --ulimit flags that repeat the test's own hard limits:
// podman otherwise asks for more open files and processes than a process
// without CAP_SYS_RESOURCE (as in some CI sandboxes) may set.
func rlimits(t *testing.T) []string {
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	n := min(nofile.Max, 1<<20)
	// 4096 processes (threads) is plenty for one keep; podman itself
	// lowers the limit it hands on, so the test's own could be too high.
	return []string{"--ulimit", fmt.Sprintf("nofile=%d:%d", n, n), "--ulimit", "nproc=4096:4096"}
}

// baseImage is the runtime base the Dockerfile names by default.
const baseImage = "gcr.io/distroless/cc-debian12:nonroot"

// reachable reports whether the registry of image answers HTTPS in time.
func reachable(image string) bool {
	host, _, _ := strings.Cut(image, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+host+"/v2/", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// baseDebs are the Debian packages of distroless/cc's libraries: glibc for
// keep, the others for PKCS#11 modules (SoftHSM2 needs all of them).
var baseDebs = []string{"libc6", "libgcc-s1", "libstdc++6", "libssl3"}

// localBase imports a stand-in for the distroless/cc base, for machines
// that cannot reach its registry: the files of the host's baseDebs (the
// glibc keep is linked against: this test runs on Debian 12, like the
// base), /tmp, and the user and group nonroot (65532), as distroless has
// them.
func localBase(t *testing.T, p *podman) string {
	t.Helper()
	out, err := exec.Command("dpkg", append([]string{"-L"}, baseDebs...)...).Output()
	if err != nil {
		t.Skipf("the base image's registry is unreachable and dpkg -L %s fails (%v): cannot make a glibc base here", strings.Join(baseDebs, " "), err)
	}
	var files []string
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		// Directories come with their files; on a merged-/usr system
		// /lib is a symlink, which the tar must not hold as such.
		if fi, err := os.Stat(f); err == nil && !fi.IsDir() {
			files = append(files, strings.TrimPrefix(f, "/"))
		}
	}
	dir := t.TempDir()
	skel := filepath.Join(dir, "skel")
	for name, content := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
		"etc/group":  "root:x:0:\nnonroot:x:65532:\n",
	} {
		p := filepath.Join(skel, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(skel, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(skel, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "files")
	if err := os.WriteFile(list, []byte(strings.Join(files, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "base.tar")
	for _, args := range [][]string{
		{"-C", "/", "--no-recursion", "-cf", tarball, "-T", list},
		{"-C", skel, "-rf", tarball, "etc", "tmp"},
	} {
		if out, err := exec.Command("tar", args...).CombinedOutput(); err != nil {
			t.Fatalf("tar %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	const name = "localhost/keep-test-base:latest"
	p.run("import", tarball, name)
	return name
}

// imageConfig is what the test checks of podman image inspect's output.
type imageConfig struct {
	Config struct {
		User         string
		ExposedPorts map[string]any
		Volumes      map[string]any
	}
	Healthcheck *struct {
		Test        []string
		StartPeriod int64
	}
}

// TestContainerImage builds the image of deploy/container/Dockerfile from a
// keep binary built outside (--target prebuilt; the Go stage needs the
// golang image of Docker Hub, which CI may not reach) and runs it: as the
// issue asks, `keep server --dev` answers its health endpoints inside it,
// and the image's own HEALTHCHECK reports the container healthy; and as an
// operator runs it, a node with its HSM key in a mounted file keeps its
// state in the volume as the non-root user, stops cleanly on SIGTERM and
// comes back from the volume; and a node on a PKCS#11 token loads its
// module in an image derived as docs/deploy-container.md says.
func TestContainerImage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("container images are built and run on Linux")
	}
	aptget.Need(t, "podman", "podman")
	aptget.Need(t, "runc", "runc")
	module := softhsm.Module(t) // before localBase copies its libraries
	p := newPodman(t)

	// The build context: the binary where deploy/build.sh puts it.
	ctx := t.TempDir()
	bin := filepath.Join(ctx, "dist", "keep-linux-"+runtime.GOARCH)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, testnode.Binary(t), bin, 0o755)

	build := []string{"build", "--format", "docker", "--target", "prebuilt",
		"-f", repoFile(t, "deploy/container/Dockerfile"), "-t", "localhost/keep-test:latest"}
	// The binary is linked against the host's glibc: on the base of
	// another Debian release it might not run.
	osRelease, _ := os.ReadFile("/etc/os-release")
	switch bookworm := strings.Contains(string(osRelease), "VERSION_CODENAME=bookworm"); {
	case bookworm && reachable(baseImage):
		t.Logf("base image %s", baseImage)
	default:
		base := localBase(t, p)
		t.Logf("base image %s made of the host's %s (%s unreachable, or the host is not Debian 12)", base, strings.Join(baseDebs, ", "), baseImage)
		build = append(build, "--pull=never", "--build-arg", "BASE_IMAGE="+base)
	}
	start := time.Now()
	p.run(append(build, ctx)...)
	t.Logf("image built in %v", time.Since(start).Round(100*time.Millisecond))

	var conf []imageConfig
	if err := json.Unmarshal([]byte(p.run("image", "inspect", "localhost/keep-test:latest")), &conf); err != nil || len(conf) != 1 {
		t.Fatalf("image inspect: %v (%d images)", err, len(conf))
	}
	c, hc := conf[0].Config, conf[0].Healthcheck
	switch {
	case c.User != "65532:65532":
		t.Errorf("image runs as %q, want the non-root 65532:65532", c.User)
	case c.ExposedPorts["7373/tcp"] == nil:
		t.Errorf("image exposes %v, want 7373/tcp", c.ExposedPorts)
	case c.Volumes["/var/lib/keep"] == nil:
		t.Errorf("image volumes %v, want /var/lib/keep", c.Volumes)
	case hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "keep health"):
		t.Errorf("image health check %+v, want keep health", hc)
	case hc.StartPeriod < int64(30*time.Second):
		t.Errorf("health check start period %v: a starting node may refuse handshakes for longer", time.Duration(hc.StartPeriod))
	}

	run := append([]string{"run", "--detach", "--network", "none"}, rlimits(t)...)

	// podman exits 125 when it cannot start a container at all (no
	// namespaces, no cgroups for it, no runtime): a machine that cannot
	// run images, not a fault of the image.
	_, _, err := p.try(context.Background(), append(append([]string{"run", "--rm", "--network", "none"}, rlimits(t)...), "localhost/keep-test:latest", "version")...)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 125 {
		t.Skipf("built the image, but this machine cannot run containers: %v", err)
	}
	if err != nil {
		t.Fatalf("keep version in the image: %v", err)
	}

	t.Run("dev", func(t *testing.T) {
		p.run(append(run, "--name", "keep-dev", "localhost/keep-test:latest", "server", "--dev")...)
		waitHealthy(t, p, "keep-dev")
		out := p.run("exec", "keep-dev", "/usr/local/bin/keep", "health", "-k", "--ready", "--write")
		if !strings.Contains(out, "127.0.0.1:7373: ready for writes") {
			t.Fatalf("keep health --ready --write in the container: %q", out)
		}
		// podman top: a header line, then the user of each process.
		users := strings.Fields(p.run("top", "keep-dev", "user"))
		if len(users) != 2 || users[1] != "nonroot" {
			t.Fatalf("podman top keep-dev user: %q, want one process of nonroot", users)
		}
	})

	t.Run("health check probes the node", func(t *testing.T) {
		// A node listening elsewhere than the image expects is not
		// healthy: the check asks the node, it is not a constant.
		p.run(append(run, "--name", "keep-elsewhere", "localhost/keep-test:latest", "server", "--dev", "--address", "127.0.0.1:7999")...)
		deadline := time.Now().Add(30 * time.Second)
		for p.exec("keep-elsewhere", "health", "-k", "127.0.0.1:7999") != nil {
			if time.Now().After(deadline) {
				t.Fatal("the node on 127.0.0.1:7999 did not answer keep health within 30s")
			}
			time.Sleep(200 * time.Millisecond)
		}
		if _, _, err := p.try(context.Background(), "healthcheck", "run", "keep-elsewhere"); err == nil {
			t.Fatal("the health check passed on a node not listening where the image expects it")
		}
	})

	t.Run("volume and key file", func(t *testing.T) {
		hsmKey := testnode.NewHSMKey(t)
		keyFile := filepath.Join(t.TempDir(), "hsm-key")
		if err := os.WriteFile(keyFile, []byte(hsmKey+"\n"), 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(keyFile, 65532, 65532); err != nil {
			t.Fatal(err)
		}
		p.run("volume", "create", "keep-data")
		p.run(append(run, "--name", "keep-node", "--volume", "keep-data:/var/lib/keep",
			"--volume", keyFile+":/run/secrets/keep-hsm-key:ro",
			"--env", "MINIO_KMS_HSM_KEY_FILE=/run/secrets/keep-hsm-key",
			"localhost/keep-test:latest")...)
		waitHealthy(t, p, "keep-node")
		want, err := testnode.HSMRootAPIKey(hsmKey)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := testnode.BannerAPIKey(p.run("logs", "keep-node")); err != nil || got != want {
			t.Fatalf("banner API key %q (%v), want the one the key file's HSM key derives", got, err)
		}

		mount := p.run("volume", "inspect", "--format", "{{.Mountpoint}}", "keep-data")
		fi, err := os.Stat(filepath.Join(mount, "kms.db"))
		if err != nil {
			t.Fatalf("no kms.db in the volume: %v", err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 65532 {
			t.Fatalf("kms.db belongs to uid %d, want 65532", st.Uid)
		}

		p.run("stop", "--time", "30", "keep-node")
		if code := p.run("inspect", "--format", "{{.State.ExitCode}}", "keep-node"); code != "0" {
			t.Fatalf("keep exited %s on SIGTERM, want 0\n%s", code, p.run("logs", "keep-node"))
		}
		p.run("start", "keep-node")
		waitHealthy(t, p, "keep-node")
		if logs := p.run("logs", "keep-node"); strings.Count(logs, "Cluster ID") != 2 {
			t.Fatalf("the restarted node did not come up from the volume:\n%s", logs)
		}
	})

	t.Run("pkcs11", func(t *testing.T) { runPKCS11(t, p, run, module) })
}

// runPKCS11 derives an image with SoftHSM2's module, as
// docs/deploy-container.md tells operators to add theirs, and runs a node
// on a token of the host: keep loads the module (cgo, dlopen) in the image
// and unseals with the token's key.
func runPKCS11(t *testing.T, p *podman, run []string, module string) {
	h := testnode.SoftHSM2(t, "ctr", "KEEP_PKCS11_PIN")
	want := h.RootAPIKey(t).String()
	var conf, pin string
	for _, e := range h.Env {
		if v, ok := strings.CutPrefix(e, "SOFTHSM2_CONF="); ok {
			conf = v
		}
		if v, ok := strings.CutPrefix(e, "KEEP_PKCS11_PIN="); ok {
			pin = v
		}
	}
	if conf == "" || pin == "" {
		t.Fatalf("SoftHSM2 token without SOFTHSM2_CONF or PIN: %d variables", len(h.Env))
	}
	// The token is the container user's, at the same path as on the host
	// (its config file names the token directory).
	tokens := filepath.Dir(conf)
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte(pin+"\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	chown := func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, 65532, 65532)
	}
	if err := filepath.WalkDir(tokens, chown); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(pinFile, 65532, 65532); err != nil {
		t.Fatal(err)
	}

	ctx := t.TempDir()
	copyFile(t, module, filepath.Join(ctx, "libsofthsm2.so"), 0o644)
	dockerfile := "FROM localhost/keep-test:latest\nCOPY libsofthsm2.so /usr/lib/softhsm/libsofthsm2.so\n"
	if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	p.run("build", "--format", "docker", "--pull=never", "-t", "localhost/keep-test-pkcs11:latest", ctx)
	p.run(append(run, "--name", "keep-pkcs11",
		"--volume", tokens+":"+tokens,
		"--volume", pinFile+":/run/secrets/keep-pin:ro",
		"--env", "SOFTHSM2_CONF="+conf,
		"--env", "KEEP_PKCS11_MODULE=/usr/lib/softhsm/libsofthsm2.so",
		"--env", "KEEP_PKCS11_TOKEN=ctr",
		"--env", "KEEP_PKCS11_KEY=root",
		"--env", "KEEP_PKCS11_NAME=ctr",
		"--env", "KEEP_PKCS11_PIN_FILE=/run/secrets/keep-pin",
		"localhost/keep-test-pkcs11:latest")...)
	waitHealthy(t, p, "keep-pkcs11")
	logs := p.run("logs", "keep-pkcs11")
	if got, err := testnode.BannerAPIKey(logs); err != nil || got != want {
		t.Fatalf("banner API key %q (%v), want the token's %s\n%s", got, err, want, logs)
	}
	if strings.Contains(logs, pin) {
		t.Fatal("the container's log holds the PIN")
	}
}

// exec runs keep args in the container and returns podman's error.
func (p *podman) exec(container string, args ...string) error {
	_, _, err := p.try(context.Background(), append([]string{"exec", container, "/usr/local/bin/keep"}, args...)...)
	return err
}

// waitHealthy runs the image's health check until it passes; it fails the
// test after the check's start period.
func waitHealthy(t *testing.T, p *podman, container string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, _, err := p.try(context.Background(), "healthcheck", "run", container)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			logs, _, _ := p.try(context.Background(), "logs", container)
			t.Fatalf("%s not healthy within 60s: %v\nlogs:\n%s", container, err, logs)
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// copyFile copies src to dst with mode perm.
func copyFile(t *testing.T, src, dst string, perm os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, perm); err != nil {
		t.Fatal(err)
	}
}
