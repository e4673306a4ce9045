package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/state"
)

// goldenWireErrors is what each code means on the wire, written out here
// rather than taken from wireErrors: nodes of other versions rely on it. A
// change to an entry remaps errors between versions during a rolling
// upgrade; never edit one. Kinds 1 to 18 are the positions every node
// before the codes sent. A new error in wireErrors is appended here too.
var goldenWireErrors = []struct {
	kind int
	code string
	err  error
}{
	{1, "enclave_exists", state.ErrEnclaveExists},
	{2, "enclave_not_found", state.ErrEnclaveNotFound},
	{3, "key_exists", state.ErrKeyExists},
	{4, "key_not_found", state.ErrKeyNotFound},
	{5, "policy_not_found", state.ErrPolicyNotFound},
	{6, "identity_not_found", state.ErrIdentityNotFound},
	{7, "identity_exists", state.ErrIdentityExists},
	{8, "invalid_argument", state.ErrInvalidArgument},
	{9, "not_initialized", state.ErrNotInitialized},
	{10, "decrypt", crypto.ErrDecrypt},
	{11, "no_leader", ErrNoLeader},
	{12, "leadership_lost", ErrLeadershipLost},
	{13, "shutting_down", ErrShuttingDown},
	{14, "removed", ErrRemoved},
	{15, "node_exists", ErrNodeExists},
	{16, "node_not_found", ErrNodeNotFound},
	{17, "node_unavailable", ErrNodeUnavailable},
	{18, "not_fresh", ErrNotFresh},
	{19, "disk_full", ErrDiskFull},
	{20, "disk_failed", ErrDiskFailed},
	{21, "version_conflict", state.ErrVersionConflict},
}

// TestWireErrorCodesStable fails if an error's kind or code changes meaning,
// or an error is sent that the golden table does not pin.
func TestWireErrorCodesStable(t *testing.T) {
	if len(wireErrors) != len(goldenWireErrors) {
		t.Errorf("wireErrors has %d entries, the golden table %d: append a new error to both", len(wireErrors), len(goldenWireErrors))
	}
	for _, g := range goldenWireErrors {
		e := encodeError(fmt.Errorf("context: %w", g.err))
		if e.Kind != g.kind || e.Code != g.code {
			t.Errorf("%v is sent as kind %d code %q, want kind %d code %q", g.err, e.Kind, e.Code, g.kind, g.code)
		}
		// As today's peers send it (code and kind), as older peers do
		// (kind alone), and as a newer peer that renamed nothing but
		// knows codes this node does not (unknown code, known kind).
		for _, sent := range []rpcError{
			{Message: "m", Kind: g.kind, Code: g.code},
			{Message: "m", Kind: g.kind},
			{Message: "m", Kind: g.kind, Code: "from_the_future"},
			{Message: "m", Kind: 999, Code: g.code},
		} {
			if got := decodeError(&sent); !errors.Is(got, g.err) || got.Error() != "m" {
				t.Errorf("%+v decodes to %v (%T), want %v", sent, got, errors.Unwrap(got), g.err)
			}
		}
	}
}

// TestWireErrorJSON pins the encoding itself: an older node reads "kind"
// and ignores "code".
func TestWireErrorJSON(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, `null`},
		{fmt.Errorf("cannot create k: %w", state.ErrKeyExists), `{"message":"cannot create k: key already exists","kind":3,"code":"key_exists"}`},
		{unreachable("10.0.0.1:7373", errNotSent), `{"message":"` + unreachable("10.0.0.1:7373", errNotSent).Error() + `","kind":11,"code":"no_leader"}`},
		{errors.New("disk on fire"), `{"message":"disk on fire","kind":0}`},
	} {
		got, err := json.Marshal(encodeError(tc.err))
		if err != nil || string(got) != tc.want {
			t.Errorf("encode %v = %s, %v; want %s", tc.err, got, err, tc.want)
		}
	}
	var old forwardResponse
	if err := json.Unmarshal([]byte(`{"index":0,"error":{"message":"key already exists","kind":3}}`), &old); err != nil {
		t.Fatal(err)
	}
	if err := decodeError(old.Err); !errors.Is(err, state.ErrKeyExists) {
		t.Errorf("an older node's reply decodes to %v, want key exists", err)
	}
	for _, sent := range []rpcError{{Message: "x"}, {Message: "x", Kind: -1}, {Message: "x", Kind: 999, Code: "unknown"}} {
		got := decodeError(&sent)
		for _, g := range goldenWireErrors {
			if errors.Is(got, g.err) {
				t.Errorf("%+v decodes to %v", sent, g.err)
			}
		}
	}
}

func TestIndexWireErrorsRefusesReuse(t *testing.T) {
	a, b := errors.New("a"), errors.New("b")
	for _, list := range [][]wireError{
		{{1, "a", a}, {1, "b", b}},
		{{1, "a", a}, {2, "a", b}},
		{{0, "a", a}},
		{{1, "", a}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%v: no panic", list)
				}
			}()
			indexWireErrors(list)
		}()
	}
}

// FuzzDecodeError checks that whatever a peer sends as an error decodes
// to an error with the peer's text, and to a registered error only by a
// registered kind or code.
func FuzzDecodeError(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp forwardResponse
		if json.Unmarshal(data, &resp) != nil || resp.Err == nil {
			return
		}
		err := decodeError(resp.Err)
		if err.Error() != resp.Err.Message {
			t.Fatalf("decoded text %q, sent %q", err, resp.Err.Message)
		}
		_, byCode := wireErrorsByCode[resp.Err.Code]
		_, byKind := wireErrorsByKind[resp.Err.Kind]
		if known := errors.Unwrap(err) != nil; known != (byCode || byKind) {
			t.Fatalf("%+v decoded to %v", resp.Err, errors.Unwrap(err))
		}
	})
}

// TestWireNamesStable pins the other names nodes of different versions
// must agree on: the TLS protocols of raft and forwarded writes, the RPC
// paths, and the MAC label of a join request.
func TestWireNamesStable(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ALPN, "keep-raft/1"},
		{ForwardALPN, "keep-forward/1"},
		{rpcMembership, "/v1/rpc/membership"},
		{rpcStatus, "/v1/rpc/status"},
		{rpcJoin, "/v1/rpc/join"},
		{rpcReset, "/v1/rpc/reset"},
		{rpcApplied, "/v1/rpc/applied"},
		{rpcRestart, "/v1/rpc/restart"},
		{infoJoinProof, "keep/mac/join/v1"},
	} {
		if tc.got != tc.want {
			t.Errorf("on the wire as %q, want %q: a node of another version would not understand it", tc.got, tc.want)
		}
	}
}

// TestRaftError: what raft says of a write or a membership change that
// failed reaches the client as an error the APIs answer with 503, not as
// an internal error (a leader that lost its leadership during `keep add`
// answered 500).
func TestRaftError(t *testing.T) {
	disk := &StorageError{Host: "n1", Err: syscall.ENOSPC}
	for _, tc := range []struct {
		err, want error
	}{
		{raft.ErrNotLeader, ErrNoLeader},
		{fmt.Errorf("add voter: %w", raft.ErrNotLeader), ErrNoLeader},
		{raft.ErrEnqueueTimeout, ErrNoLeader},
		{raft.ErrLeadershipLost, ErrLeadershipLost},
		{disk, ErrDiskFull},
		{errors.New("other"), nil},
	} {
		got := raftError(tc.err)
		if (tc.want == nil) != (got == nil) || (tc.want != nil && !errors.Is(got, tc.want)) {
			t.Errorf("raftError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
