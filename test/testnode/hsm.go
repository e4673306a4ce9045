package testnode

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/proto"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/test/softhsm"
)

// HSM is one HSM as tests configure nodes with it: its item of a config
// file's hsm: list, the environment that item needs, and the same HSM
// opened in the test process, so that a test can compute what a node on it
// derives (root API key) and unseal what it sealed. A soft HSM and a
// PKCS#11 token are both an HSM, so that a test of several HSMs takes the
// kind of its HSMs as a parameter.
type HSM struct {
	Name    string   // the HSM's name in the cluster
	Entry   string   // its item of the hsm: list, YAML lines without the leading "- "
	Env     []string // the environment a node on it needs (KEY=VALUE)
	Secrets [][]byte // what must never be on disk or in a log: key material, PIN

	open func(t testing.TB) hsm.HSM
}

// Open opens the HSM in the test process; it is closed when the test ends.
func (h HSM) Open(t testing.TB) hsm.HSM {
	t.Helper()
	o := h.open(t)
	t.Cleanup(func() { o.Close() })
	return o
}

// RootAPIKey is the root API key that h derives: the SysAdmin key of a
// cluster that h seals.
func (h HSM) RootAPIKey(t testing.TB) mtls.PrivateKey {
	t.Helper()
	k, err := hsm.RootAPIKey(context.Background(), h.Open(t))
	if err != nil {
		t.Fatalf("HSM %s: %v", h.Name, err)
	}
	return k
}

// SoftHSM returns a fresh soft HSM key (hsm:aes256:…) named name, read by
// nodes from the environment variable keyEnv. An empty name leaves the
// name out of the config item: the node then calls it hsm.LegacyName.
func SoftHSM(t testing.TB, name, keyEnv string) HSM {
	t.Helper()
	key := NewHSMKey(t)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(key, "hsm:aes256:"))
	if err != nil {
		t.Fatal(err)
	}
	entry := "soft: {key_env: " + keyEnv + "}"
	h := HSM{Name: hsm.LegacyName, Env: []string{keyEnv + "=" + key}, Secrets: [][]byte{[]byte(key), raw}}
	if name != "" {
		h.Name = name
		entry = "name: " + strconv.Quote(name) + "\n" + entry
	}
	h.Entry = entry
	h.open = func(t testing.TB) hsm.HSM {
		s, err := hsm.ParseSoftKey(key)
		if err != nil {
			t.Fatal(err)
		}
		s.SetName(h.Name)
		return s
	}
	return h
}

// HSMConfig returns the hsm: section of a config file listing hsms in
// order, and the environment they need.
func HSMConfig(hsms ...HSM) (yaml string, env []string) {
	var b strings.Builder
	b.WriteString("hsm:\n")
	for _, h := range hsms {
		for i, line := range strings.Split(h.Entry, "\n") {
			if i == 0 {
				b.WriteString("  - " + line + "\n")
			} else {
				b.WriteString("    " + line + "\n")
			}
		}
		env = append(env, h.Env...)
	}
	return b.String(), env
}

// The cluster's HSM commands (spec upstream §11), which the pinned kms-go
// has no methods for: AddHSMRequest is wire-identical to
// RemoveClusterNodeRequest {Host=name, DeleteClusterOnHost=overwrite},
// RemoveHSMRequest to CreateEnclaveRequest {Name}.
const (
	CmdAddHSM    = cmds.Command(5)
	CmdRemoveHSM = cmds.Command(6)
)

// AddHSM sends CLUSTER:ADDHSM for the HSM name to the node at addr (the
// node must be configured with it) as key.
func AddHSM(ctx context.Context, t testing.TB, key mtls.PrivateKey, addr, name string, overwrite bool) error {
	t.Helper()
	return SendCommand(ctx, t, key, addr, CmdAddHSM, &pb.RemoveClusterNodeRequest{Host: name, DeleteClusterOnHost: overwrite})
}

// RemoveHSM sends CLUSTER:REMOVEHSM for the HSM name to the node at addr
// as key.
func RemoveHSM(ctx context.Context, t testing.TB, key mtls.PrivateKey, addr, name string) error {
	t.Helper()
	return SendCommand(ctx, t, key, addr, CmdRemoveHSM, &pb.CreateEnclaveRequest{Name: name})
}

// SendCommand sends one command frame to the node at addr through kms-go's
// Client.Send, as key, and returns its error (a kms.Error for a refusal).
func SendCommand(ctx context.Context, t testing.TB, key mtls.PrivateKey, addr string, cmd cmds.Command, msg proto.Message) error {
	t.Helper()
	body, err := cmds.EncodePB(nil, cmd, msg)
	if err != nil {
		t.Fatal(err)
	}
	return SendFrames(ctx, t, key, addr, body)
}

// SendFrames sends body, command frames as cmds.Encode makes them, to the
// node at addr through kms-go's Client.Send, as key: a test frames what
// kms-go would refuse to encode itself.
func SendFrames(ctx context.Context, t testing.TB, key mtls.PrivateKey, addr string, body []byte) error {
	t.Helper()
	resp, err := Client(t, key, addr).Send(ctx, &kms.Request{Host: addr, Body: body})
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// HSMStatus is what GET /v1/health/status tells of a node's HSMs.
type HSMStatus struct {
	UnsealedWith string   `json:"unsealed_with"` // the HSM the node unsealed the root key with
	Sealed       []string `json:"hsm"`           // the HSMs that seal the cluster's root key
	Configured   []string `json:"hsm_active"`    // the HSMs the node is configured with
}

func (s HSMStatus) String() string {
	return fmt.Sprintf("unsealed_with=%s hsm=%v hsm_active=%v", s.UnsealedWith, s.Sealed, s.Configured)
}

// GetHSMStatus asks the node at addr for GET /v1/health/status (JSON) as
// key, a SysAdmin.
func GetHSMStatus(t testing.TB, key mtls.PrivateKey, addr string) (HSMStatus, error) {
	t.Helper()
	hc := HTTPClient(t, key, 5*time.Second)
	req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/v1/health/status", nil)
	if err != nil {
		return HSMStatus{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return HSMStatus{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return HSMStatus{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return HSMStatus{}, fmt.Errorf("GET /v1/health/status on %s: %d %s", addr, resp.StatusCode, body)
	}
	var st HSMStatus
	if err := json.Unmarshal(body, &st); err != nil {
		return HSMStatus{}, fmt.Errorf("GET /v1/health/status on %s: %w: %s", addr, err, body)
	}
	return st, nil
}

// tokens holds the SoftHSM2 token of each test that made one: a process
// reads SOFTHSM2_CONF once, when it loads the module, so every token of a
// test lies beside its first (softhsm.Token.NewToken).
var tokens sync.Map // testing.TB → *softhsm.Token

// SoftHSM2 returns an HSM named name on a fresh SoftHSM2 token of its own
// (label name, the PIN in the environment variable pinEnv), whose key
// objects it creates. Tokens of one test share a SOFTHSM2_CONF, which the
// test process points at (t.Setenv: the test cannot be parallel).
func SoftHSM2(t testing.TB, name, pinEnv string) HSM {
	t.Helper()
	label := strings.NewReplacer(":", "-", "/", "-").Replace(name)
	var tok *softhsm.Token
	if first, ok := tokens.Load(t); ok {
		tok = first.(*softhsm.Token).NewToken(label)
	} else {
		tok = softhsm.NewToken(t, label)
		tokens.Store(t, tok)
		t.Cleanup(func() { tokens.Delete(t) })
	}
	conf := hsm.PKCS11Config{Name: name, Module: tok.Module, Token: label, Key: "root", PIN: tok.PIN}
	if err := hsm.CreatePKCS11Key(conf); err != nil {
		t.Fatalf("create the key of HSM %s: %v", name, err)
	}
	entry := "name: " + strconv.Quote(name) + "\n" +
		"pkcs11: {module: " + strconv.Quote(tok.Module) + ", token: " + strconv.Quote(label) + ", key: root, pin_env: " + pinEnv + "}"
	return HSM{
		Name:    name,
		Entry:   entry,
		Env:     append(tok.Env(), pinEnv+"="+tok.PIN),
		Secrets: [][]byte{[]byte(tok.PIN), []byte(tok.SOPIN)},
		open: func(t testing.TB) hsm.HSM {
			p, err := hsm.OpenPKCS11(conf)
			if err != nil {
				t.Fatalf("open HSM %s: %v", name, err)
			}
			return p
		},
	}
}
