package cluster_test

import "testing"

// TestHealthyAfter checks the health test's notion of caught up: a node
// with the leader's commit, or with the commit the leader had at the poll
// before, is caught up; one behind that is not.
func TestHealthyAfter(t *testing.T) {
	idx := []int{0, 1, 2}
	views := func(c0, c1, c2 uint64) map[int]view {
		return map[int]view{
			0: {role: "Leader", leader: 0, commit: c0},
			1: {role: "Follower", leader: 0, commit: c1},
			2: {role: "Follower", leader: 0, commit: c2},
		}
	}
	for _, tc := range []struct {
		name     string
		vs       map[int]view
		caughtUp uint64
		healthy  bool
	}{
		{"equal commits", views(100, 100, 100), 0, true},
		{"follower behind, no poll before", views(102, 100, 102), 0, false},
		{"follower at the leader's commit of the poll before", views(102, 100, 102), 100, true},
		{"follower behind the poll before", views(102, 99, 102), 100, false},
		{"no leader", map[int]view{0: {role: "Follower", leader: -1, commit: 5}, 1: {role: "Follower", leader: -1, commit: 5}, 2: {role: "Follower", leader: -1, commit: 5}}, 5, false},
		{"node missing", map[int]view{0: {role: "Leader", leader: 0, commit: 5}, 1: {role: "Follower", leader: 0, commit: 5}}, 0, false},
		{"follows another", map[int]view{0: {role: "Leader", leader: 0, commit: 5}, 1: {role: "Follower", leader: 2, commit: 5}, 2: {role: "Follower", leader: 0, commit: 5}}, 5, false},
	} {
		msg, lc := healthyAfter(tc.vs, idx, tc.caughtUp)
		if (msg == "") != tc.healthy {
			t.Errorf("%s: healthyAfter = %q, want healthy %v", tc.name, msg, tc.healthy)
		}
		if tc.vs[0].role == "Leader" && len(tc.vs) == 3 && lc != tc.vs[0].commit {
			t.Errorf("%s: leader's commit %d, want %d", tc.name, lc, tc.vs[0].commit)
		}
	}
}
