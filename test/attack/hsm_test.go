package attack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/test/testnode"
)

// hsmNode starts a node on the soft HSM key of MINIO_KMS_HSM_KEY
// (hsm:aes256), then restarts it configured with the soft HSM b too, which
// does not seal the root key (a fresh node would seal it with both): every
// ADDHSM b below would succeed for a SysAdmin.
func hsmNode(t *testing.T) (n *testnode.Node, a, b testnode.HSM) {
	t.Helper()
	a, b = testnode.SoftHSM(t, "", "MINIO_KMS_HSM_KEY"), testnode.SoftHSM(t, "hsm-b", "KEEP_TEST_HSM_B")
	n = testnode.Start(t, testnode.Options{HSMKey: "-", ExtraEnv: a.Env})
	if n.APIKey != a.RootAPIKey(t).String() {
		t.Fatalf("the node prints root API key %s, want the one of its HSM %s", n.APIKey, a.Name)
	}
	n.Stop()
	section, env := testnode.HSMConfig(a, b)
	n.Config = filepath.Join(t.TempDir(), "keep.yaml")
	if err := os.WriteFile(n.Config, []byte("version: v1\n"+section), 0o600); err != nil {
		t.Fatal(err)
	}
	n.ExtraEnv, n.NoAPIKey = env, true
	n.MustStart()
	wantSeals(t, n, n.Root, a.Name)
	return n, a, b
}

// wantSeals fails the test unless the node's cluster is sealed by exactly
// the HSMs names.
func wantSeals(t *testing.T, n *testnode.Node, root mtls.PrivateKey, names ...string) {
	t.Helper()
	st, err := testnode.GetHSMStatus(t, root, n.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Sealed, names) {
		t.Fatalf("the root key is sealed by %v, want %v", st.Sealed, names)
	}
}

// TestHSMCommandsRefuse sends CLUSTER:ADDHSM and CLUSTER:REMOVEHSM as
// identities that are not SysAdmins, with names no HSM can have, and sends
// the command after them (7), which does not exist: each is refused and the
// cluster's seals do not change.
func TestHSMCommandsRefuse(t *testing.T) {
	n, a, b := hsmNode(t)
	root := n.Root
	ctx := func() context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return ctx
	}
	rc := n.RootClient(t)
	identNoErr(t, rc.CreateEnclave(ctx(), &kms.CreateEnclaveRequest{Name: "tenant"}), "create enclave")
	callers := map[string]mtls.PrivateKey{"unknown identity": testnode.NewAPIKey(t)}
	for _, c := range []struct {
		name, enclave string
		priv          kms.Privilege
	}{
		{"Admin of the default enclave", "", kms.Admin},
		{"Admin of another enclave", "tenant", kms.Admin},
		{"User", "", kms.User},
	} {
		key := testnode.NewAPIKey(t)
		identNoErr(t, rc.CreateIdentity(ctx(), c.enclave, &kms.CreateIdentityRequest{Identity: key.Identity(), Privilege: c.priv}), "create %s", c.name)
		callers[c.name] = key
	}
	// A policy cannot grant what only SysAdmins may do, even one that
	// names the commands.
	policy := testnode.NewAPIKey(t)
	identNoErr(t, rc.CreateIdentity(ctx(), "", &kms.CreateIdentityRequest{Identity: policy.Identity(), Privilege: kms.User}), "create user with policy")
	err := rc.CreatePolicy(ctx(), "", &kms.CreatePolicyRequest{Name: "hsm", Allow: map[cmds.Command]kms.RuleSet{
		testnode.CmdAddHSM: {"*": {}}, testnode.CmdRemoveHSM: {"*": {}},
	}})
	if err == nil {
		identNoErr(t, rc.AssignPolicy(ctx(), "", &kms.AssignPolicyRequest{Policy: "hsm", Identity: policy.Identity()}), "assign")
		callers["User allowed the HSM commands by policy"] = policy
	} else {
		t.Logf("a policy naming commands 5 and 6 is refused: %s", testnode.DescribeErr(err))
	}

	t.Run("ADDHSM not SysAdmin", func(t *testing.T) {
		for who, key := range callers {
			for _, overwrite := range []bool{false, true} {
				err := testnode.AddHSM(ctx(), t, key, n.Addr, b.Name, overwrite)
				if testnode.StatusOf(err) != 403 {
					t.Errorf("ADDHSM %s (overwrite %v) as %s: %s, want 403", b.Name, overwrite, who, testnode.DescribeErr(err))
				}
			}
		}
		wantSeals(t, n, root, a.Name)
	})

	identNoErr(t, testnode.AddHSM(ctx(), t, root, n.Addr, b.Name, false), "ADDHSM %s as root", b.Name)
	wantSeals(t, n, root, a.Name, b.Name)

	t.Run("REMOVEHSM not SysAdmin", func(t *testing.T) {
		for who, key := range callers {
			err := testnode.RemoveHSM(ctx(), t, key, n.Addr, b.Name)
			if testnode.StatusOf(err) != 403 {
				t.Errorf("REMOVEHSM %s as %s: %s, want 403", b.Name, who, testnode.DescribeErr(err))
			}
		}
		// b's root API key is SysAdmin now, but not the node's own HSM:
		// a's seal, which the node uses, stays.
		err := testnode.RemoveHSM(ctx(), t, b.RootAPIKey(t), n.Addr, a.Name)
		if testnode.StatusOf(err) != 409 {
			t.Errorf("REMOVEHSM %s, which the node uses, as the root of %s: %s, want 409", a.Name, b.Name, testnode.DescribeErr(err))
		}
		wantSeals(t, n, root, a.Name, b.Name)
	})

	t.Run("bad names", func(t *testing.T) {
		long := strings.Repeat("h", 100<<10)
		// Field 1 is the name in both requests (AddHSMRequest: Host,
		// RemoveHSMRequest: Name); framed by hand, since protobuf refuses
		// to encode a string that is not UTF-8.
		frame := func(cmd cmds.Command, name string) []byte {
			msg := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), name)
			if cmd == testnode.CmdAddHSM {
				msg = protowire.AppendVarint(protowire.AppendTag(msg, 2, protowire.VarintType), 1) // overwrite
			}
			body := binary.BigEndian.AppendUint16(nil, uint16(cmd))
			body = binary.BigEndian.AppendUint32(body, uint32(len(msg)))
			return append(body, msg...)
		}
		for _, tc := range []struct{ what, name string }{
			{"empty", ""}, {"100 KiB", long}, {"with a space", "hsm b"}, {"with a newline", "hsm\nb"}, {"not UTF-8", "hsm\xff"},
		} {
			for _, cmd := range []cmds.Command{testnode.CmdAddHSM, testnode.CmdRemoveHSM} {
				err := testnode.SendFrames(ctx(), t, root, n.Addr, frame(cmd, tc.name))
				if testnode.StatusOf(err) != 400 || strings.Contains(testnode.DescribeErr(err), long[:200]) {
					t.Errorf("command %d with a name %s: %s, want 400 not echoing the name", cmd, tc.what, trimErr(err))
				}
			}
		}
		wantSeals(t, n, root, a.Name, b.Name)
	})

	t.Run("command 7", func(t *testing.T) {
		err := testnode.SendCommand(ctx(), t, root, n.Addr, cmds.Command(7), &pb.CreateEnclaveRequest{Name: b.Name})
		if testnode.StatusOf(err) != 400 || !strings.Contains(err.Error(), "unknown command") {
			t.Errorf("command 7: %s, want 400 unknown command", testnode.DescribeErr(err))
		}
		wantSeals(t, n, root, a.Name, b.Name)
	})
}

// trimErr is DescribeErr cut to a readable length.
func trimErr(err error) string {
	s := testnode.DescribeErr(err)
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// sealedRootKeyName is where kms.db keeps the cluster's seals.
var sealedRootKeyName = []byte("keep/sealed-root-key")

// editSeals rewrites the seals in the kms.db of the stopped node's data
// directory dir with edit, as an attacker with write access to it would.
func editSeals(t *testing.T, dir string, edit func([]byte) []byte) {
	t.Helper()
	db, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "kms.db"), BoltOptions: &bbolt.Options{Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sealed, err := db.Get(sealedRootKeyName)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(sealedRootKeyName, edit(sealed)); err != nil {
		t.Fatal(err)
	}
}

// TestHSMTamperedSeals edits the seals in a stopped node's kms.db: garbage
// after the magic, and a seal of another HSM key (sealing another root key,
// with that HSM's identities) added. The node must refuse to start, in one
// line, without changing a file of its data directory.
func TestHSMTamperedSeals(t *testing.T) {
	n := testnode.Start(t, testnode.Options{})
	if err := n.RootClient(t).CreateKey(identCtx(t, 10*time.Second), "", &kms.CreateKeyRequest{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	n.Stop()
	var original []byte
	editSeals(t, n.Dir, func(b []byte) []byte { original = b; return b })

	evil := testnode.SoftHSM(t, "evil", "KEEP_TEST_HSM_EVIL")
	// evilSeal is the attacker's seal: another root key, sealed by an HSM
	// of the attacker's; it returns that root key too.
	evilSeal := func(t *testing.T) (hsm.Seal, []byte) {
		other := make([]byte, 32)
		rand.Read(other)
		s, err := hsm.NewSeal(context.Background(), evil.Open(t), other)
		if err != nil {
			t.Fatal(err)
		}
		return s, other
	}
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, sealed []byte) []byte
		hsms []testnode.HSM // the node's HSMs; nil: MINIO_KMS_HSM_KEY alone
		// late: the list is authentic under the attacker's own root key,
		// which the attacker's HSM (that the node is given) unseals, so
		// only the state tells: its first record does not verify under
		// that key, and the node refuses as for any tampered record, once
		// raft runs (a start that may write raft's own records).
		late bool
	}{
		{name: "garbage after the magic", edit: func(t *testing.T, _ []byte) []byte {
			return []byte("KEEPSEALS1\n{\"not\": a list")
		}},
		{name: "a seal of another HSM key added", edit: func(t *testing.T, sealed []byte) []byte {
			seals, err := hsm.DecodeSeals(sealed)
			if err != nil {
				t.Fatal(err)
			}
			// Without the cluster's root key, the attacker can MAC the
			// list only under a key of its own.
			seal, other := evilSeal(t)
			out, err := hsm.EncodeSeals(append(seals, seal), other)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}},
		{name: "a seal of another HSM key added, the node on it", hsms: []testnode.HSM{evil}, late: true, edit: func(t *testing.T, sealed []byte) []byte {
			seals, err := hsm.DecodeSeals(sealed)
			if err != nil {
				t.Fatal(err)
			}
			seal, other := evilSeal(t)
			out, err := hsm.EncodeSeals(append([]hsm.Seal{seal}, seals...), other)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			editSeals(t, n.Dir, func(b []byte) []byte { return tc.edit(t, original) })
			t.Cleanup(func() { editSeals(t, n.Dir, func([]byte) []byte { return original }) })
			saved := n.Config
			t.Cleanup(func() { n.Config, n.ExtraEnv = saved, nil })
			if tc.hsms != nil {
				section, env := testnode.HSMConfig(tc.hsms...)
				conf := filepath.Join(t.TempDir(), "keep.yaml")
				if err := os.WriteFile(conf, []byte("version: v1\n"+section), 0o600); err != nil {
					t.Fatal(err)
				}
				n.Config, n.ExtraEnv = conf, env
			}
			if tc.late {
				err := n.Start()
				var se *testnode.StartError
				if !errors.As(err, &se) || se.Timeout || se.Code == 0 || !strings.Contains(se.Stderr, "refusing tampered state") {
					if err == nil {
						n.Stop()
					}
					t.Fatalf("start on the attacker's seal: %v, want a refusal of the tampered state", err)
				}
				return
			}
			n.StartRefused(t, func() {
				// It must at least grant the added seal nothing.
				st, err := testnode.GetHSMStatus(t, n.Root, n.Addr)
				identNoErr(t, err, "status")
				if slices.Contains(st.Sealed, evil.Name) {
					t.Errorf("the node lists the added seal among the cluster's: %s", st)
				}
				_, err = testnode.Client(t, evil.RootAPIKey(t), n.Addr).ClusterStatus(identCtx(t, 10*time.Second), &kms.ClusterStatusRequest{})
				if testnode.StatusOf(err) != 403 {
					t.Errorf("the root API key of the added seal's HSM: %s, want 403", testnode.DescribeErr(err))
				}
			})
		})
	}
	// With its seals restored, the node starts and holds its key.
	n.MustStart()
	if _, err := n.RootClient(t).KeyStatus(identCtx(t, 10*time.Second), "", &kms.KeyStatusRequest{Name: "k"}); err != nil {
		t.Fatalf("after the seals were restored: %s", testnode.DescribeErr(err))
	}
}

// TestJoinForgedProof: a fresh node takes the peer handshake from nodes it
// does not know, so that a node of another of the cluster's HSMs can add
// it. An attacker with a certificate of its own and genuine seals of a
// cluster the fresh node's HSM opens (from a stolen kms.db or backup), but
// without the root key, sends it a join request with a forged proof: 403,
// and the node stays its own cluster.
func TestJoinForgedProof(t *testing.T) {
	key := testnode.NewHSMKey(t)
	donor := testnode.Start(t, testnode.Options{Name: "donor", HSMKey: key})
	donor.Stop()
	var stolen []byte
	editSeals(t, donor.Dir, func(b []byte) []byte { stolen = b; return b })

	fresh := testnode.Start(t, testnode.Options{Name: "fresh", HSMKey: key})
	attacker, err := kms.GenerateCertificate(testnode.NewAPIKey(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{ // #nosec G402 -- the attacker does not check the node
			ServerName: "node.keep.invalid", Certificates: []tls.Certificate{attacker}, InsecureSkipVerify: true, NextProtos: []string{"h2"},
		},
	}}
	forged := make([]byte, 32)
	rand.Read(forged)
	body, err := json.Marshal(map[string]any{"cluster_id": "evil", "id": "1", "leader": "127.0.0.1:1", "sealed_root_key": stolen, "proof": forged})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Post("https://"+fresh.Addr+"/v1/rpc/join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /v1/rpc/join: %v", err)
	}
	reply, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("join with stolen seals and a forged proof: %d %s, want 403", resp.StatusCode, reply)
	}
	// Still its own one-node cluster, serving its root.
	time.Sleep(500 * time.Millisecond)
	st, err := fresh.RootClient(t).ClusterStatus(identCtx(t, 10*time.Second), &kms.ClusterStatusRequest{})
	identNoErr(t, err, "status of the fresh node")
	if len(st.NodesUp) != 1 || len(st.NodesDown) != 0 {
		t.Errorf("the fresh node is no longer a one-node cluster: %d up, %d down", len(st.NodesUp), len(st.NodesDown))
	}
}
