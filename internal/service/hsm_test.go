package service

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// statusCluster is a one-node cluster whose CLUSTER:STATUS the test sets.
type statusCluster struct {
	localCluster
	up   map[int]cluster.NodeStatus
	down map[int]string
}

func (s *statusCluster) ClusterStatus(context.Context) (map[int]cluster.NodeStatus, map[int]string) {
	return s.up, s.down
}

func namedSoft(t *testing.T, name string) *hsm.Soft {
	t.Helper()
	key, err := hsm.GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hsm.ParseSoftKey(key)
	if err != nil {
		t.Fatal(err)
	}
	h.SetName(name)
	return h
}

// TestHSMs adds and removes HSMs through the service, on a cluster created
// before several HSMs (one unnamed soft seal), and every refusal.
// legacyCluster returns a one-node cluster created before several HSMs
// (its root key sealed by a soft HSM of hsm.LegacyName, unnamed), whose
// node has that HSM (a) and one more, called b; and its service.
func legacyCluster(t *testing.T) (s *Service, c *statusCluster, a *hsm.Soft) {
	t.Helper()
	ctx := context.Background()
	a = namedSoft(t, hsm.LegacyName)
	k := hsm.NewKeyring(a, namedSoft(t, "b"))
	legacy, err := a.Seal(ctx, bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	st := state.New(k)
	c = &statusCluster{localCluster: localCluster{st}}
	if err := c.Apply(ctx, &state.Entry{Op: state.OpInit, Init: &state.InitArgs{ClusterID: "c", SealedRootKey: legacy}}); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	s = New(st, c, newCaller(t).Identity)
	s.UseHSMs(k)
	return s, c, a
}

func TestHSMs(t *testing.T) {
	ctx := context.Background()
	s, c, _ := legacyCluster(t)
	st := s.state
	root := Caller{Identity: s.admin}
	user := newCaller(t)
	on := func(name string) { c.up, c.down = map[int]cluster.NodeStatus{0: {ID: "0", HSM: name}}, nil }
	on(hsm.LegacyName)

	for _, tt := range []struct {
		name string
		call func() error
		want error
	}{
		{"add by a stranger", func() error { return s.AddHSM(ctx, user, "b", false) }, ErrPermission},
		{"add an HSM this node lacks", func() error { return s.AddHSM(ctx, root, "z", false) }, ErrHSMNotConfigured},
		{"add an invalid name", func() error { return s.AddHSM(ctx, root, "", false) }, state.ErrInvalidArgument},
		{"add b", func() error { return s.AddHSM(ctx, root, "b", false) }, nil},
		{"add b again", func() error { return s.AddHSM(ctx, root, "b", false) }, state.ErrHSMExists},
		{"add b with overwrite", func() error { return s.AddHSM(ctx, root, "b", true) }, nil},
		{"remove by a stranger", func() error { return s.RemoveHSM(ctx, user, "b") }, ErrPermission},
		{"remove an unknown HSM", func() error { return s.RemoveHSM(ctx, root, "z") }, state.ErrHSMNotFound},
		{"remove b while a node uses it", func() error { on("b"); return s.RemoveHSM(ctx, root, "b") }, state.ErrHSMInUse},
		{"remove b while a node is down", func() error {
			on(hsm.LegacyName)
			c.down = map[int]string{1: "10.0.0.2:7373"}
			return s.RemoveHSM(ctx, root, "b")
		}, state.ErrHSMInUse},
		{"remove the legacy HSM", func() error { on("b"); return s.RemoveHSM(ctx, root, hsm.LegacyName) }, nil},
		{"remove the last HSM", func() error { return s.RemoveHSM(ctx, root, "b") }, state.ErrHSMInUse},
	} {
		if err := tt.call(); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
	seals := st.Seals()
	if !slices.Equal(hsm.Names(seals), []string{"b"}) || seals[0].Node == "" || seals[0].Root == "" {
		t.Fatalf("seals at the end: %+v", seals)
	}
}

// TestAddHSMCompletesLegacySeal: adding an HSM to a cluster created before
// several HSMs publishes the identities of its first HSM too, so that nodes
// that move to the new HSM still take the old one's nodes and root API key.
func TestAddHSMCompletesLegacySeal(t *testing.T) {
	ctx := context.Background()
	s, _, a := legacyCluster(t)
	st := s.state
	if seals := st.Seals(); len(seals) != 1 || seals[0].Node != "" {
		t.Fatalf("a legacy cluster's seals: %+v", seals)
	}
	s.TrustHSMRoots()
	if err := s.AddHSM(ctx, Caller{Identity: s.admin}, "b", false); err != nil {
		t.Fatal(err)
	}
	rootA, err := hsm.RootAPIKey(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	seals := st.Seals()
	if len(seals) != 2 || seals[0].Node == "" || seals[0].Root != rootA.Identity().String() {
		t.Fatalf("seals after adding b: %+v", seals)
	}
	if !s.isRoot(rootA.Identity().String()) {
		t.Error("the legacy HSM's root API key is not a root")
	}
}
