package state_test

import (
	"testing"

	"github.com/keep-kms/keep/internal/state"
)

// TestOpNamesStable pins the names of the writes as the raft log stores
// them and followers of other versions apply them: renaming one makes a
// node of another version refuse the entry, and a restarted node its own
// log.
func TestOpNamesStable(t *testing.T) {
	for _, tc := range []struct {
		op   state.Op
		want string
	}{
		{state.OpInit, "init"},
		{state.OpCreateEnclave, "enclave.create"},
		{state.OpDeleteEnclave, "enclave.delete"},
		{state.OpCreateKey, "key.create"},
		{state.OpDeleteKey, "key.delete"},
		{state.OpCreatePolicy, "policy.create"},
		{state.OpDeletePolicy, "policy.delete"},
		{state.OpAssignPolicy, "policy.assign"},
		{state.OpCreateIdentity, "identity.create"},
		{state.OpDeleteIdentity, "identity.delete"},
		{state.OpRestore, "restore"},
		{state.OpSetSettings, "settings.set"},
		{state.OpCancelDeleteKey, "key.cancel_delete"},
		{state.OpKeyState, "key.state"},
		{state.OpDestroyKey, "key.destroy"},
		{state.OpKeyRotation, "key.rotation"},
		{state.OpUsageReport, "usage.report"},
		{state.OpHSM, "cluster.hsm"},
	} {
		if string(tc.op) != tc.want {
			t.Errorf("op %q, want %q", tc.op, tc.want)
		}
	}
}
