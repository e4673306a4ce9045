package testnode

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"aead.dev/mtls"
)

var nextIP atomic.Uint32

// AllocIP returns a loopback address 127.0.0.x, x in [2, 250], that differs
// from the one the previous call returned: consecutive calls give distinct
// addresses, so that nodes (which dial their peers from their listen IP)
// can be told apart by the source address of their connections.
func AllocIP() string {
	return fmt.Sprintf("127.0.0.%d", 2+(nextIP.Add(1)-1)%249)
}

// AllocAddr returns a free IP:PORT on a fresh loopback address (AllocIP).
func AllocAddr(t testing.TB) string {
	t.Helper()
	for range 50 {
		ip := AllocIP()
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	t.Fatal("no free loopback address")
	return ""
}

// FreePort returns a free IP:PORT on ip.
func FreePort(t testing.TB, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("no free port on %s: %v", ip, err)
	}
	defer l.Close()
	return l.Addr().String()
}

// IPOf returns the IP part of an IP:PORT address.
func IPOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// NewHSMKey returns a fresh soft HSM key hsm:aes256:<base64 of 32 bytes>.
func NewHSMKey(t testing.TB) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "hsm:aes256:" + base64.StdEncoding.EncodeToString(b[:])
}

// NewAPIKey returns a fresh k1: API key.
func NewAPIKey(t testing.TB) mtls.PrivateKey {
	t.Helper()
	k, err := mtls.GenerateKeyEdDSA(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ParseAPIKey parses a k1: API key.
func ParseAPIKey(t testing.TB, s string) mtls.PrivateKey {
	t.Helper()
	k, err := mtls.ParsePrivateKey(s)
	if err != nil {
		t.Fatalf("parse API key %q: %v", s, err)
	}
	return k
}

// BaseEnv is the environment of every process the tests start: the test's
// own environment without anything keep or minkms would read, and without
// proxies. home, if set, becomes HOME.
func BaseEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "MINIO_"), strings.HasPrefix(k, "KEEP_"), k == "HOME",
			k == "HTTPS_PROXY", k == "https_proxy", k == "HTTP_PROXY", k == "http_proxy",
			k == "NO_PROXY", k == "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	if home != "" {
		env = append(env, "HOME="+home)
	}
	return env
}
