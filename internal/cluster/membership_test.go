package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestMembersRefuse checks the membership changes that are refused before
// any node is asked: on a follower without a leader (there is none to
// forward to), and on the leader for an address that already is a node,
// an address no node has, or an empty request.
func TestMembersRefuse(t *testing.T) {
	leader, follower := testInstance(t, true), testInstance(t, false)
	f := leader.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	self := string(f.Configuration().Servers[0].Address)
	const stranger = "127.0.0.9:7373"
	serve := func(req membershipRequest) func(*members) error {
		return func(m *members) error {
			body, err := json.Marshal(req)
			if err != nil {
				return err
			}
			resp, err := m.serveMembership(context.Background(), body)
			if err != nil {
				return err
			}
			return decodeError(resp.(forwardResponse).Err)
		}
	}
	for _, tc := range []struct {
		name    string
		inst    *instance
		change  func(*members) error
		want    error
		wantAny bool // an error, of no particular kind
	}{
		{"add on a follower without a leader", follower, func(m *members) error { return m.add(context.Background(), stranger) }, ErrNoLeader, false},
		{"remove on a follower without a leader", follower, func(m *members) error { return m.remove(context.Background(), stranger, true) }, ErrNoLeader, false},
		{"forwarded add on a follower", follower, serve(membershipRequest{AddNode: stranger}), ErrNoLeader, false},
		{"forwarded remove on a follower", follower, serve(membershipRequest{RemoveNode: stranger}), ErrNoLeader, false},
		{"add of a node of the cluster", leader, func(m *members) error { return m.add(context.Background(), self) }, ErrNodeExists, false},
		{"remove of an unknown address", leader, func(m *members) error { return m.remove(context.Background(), stranger, false) }, ErrNodeNotFound, false},
		{"forwarded remove of an unknown address", leader, serve(membershipRequest{RemoveNode: stranger}), ErrNodeNotFound, false},
		{"empty request", leader, serve(membershipRequest{}), nil, true},
	} {
		m := &members{current: func() *instance { return tc.inst }}
		err := tc.change(m)
		if tc.wantAny && err == nil || !tc.wantAny && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestMembersWatch checks when a node takes itself for removed: when its
// cluster's configuration lacks it, not when the configuration is empty
// (a node waiting for the log of the cluster it joins).
func TestMembersWatch(t *testing.T) {
	leader, follower := testInstance(t, true), testInstance(t, false)
	stranger := *leader
	stranger.id = "b"
	for _, tc := range []struct {
		name        string
		inst        *instance
		wantRemoved bool
	}{
		{"member", leader, false},
		{"configuration without it", &stranger, true},
		{"empty configuration", follower, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			done := make(chan struct{})
			m := &members{current: func() *instance { return tc.inst }, done: done}
			m.removed.Store(!tc.wantRemoved)
			watched := make(chan struct{})
			go func() {
				m.watch()
				close(watched)
			}()
			deadline := time.Now().Add(10 * time.Second)
			for m.removed.Load() != tc.wantRemoved && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			close(done)
			<-watched
			if got := m.removed.Load(); got != tc.wantRemoved {
				t.Errorf("removed: %v, want %v", got, tc.wantRemoved)
			}
		})
	}
}
