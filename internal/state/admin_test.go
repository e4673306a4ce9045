package state_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/state"
)

// TestAdminSetting checks that the state machine keeps the cluster's admin
// (admin.identity) a registered SysAdmin that cannot be removed while it
// is the admin, whichever write tries.
func TestAdminSetting(t *testing.T) {
	const (
		sysadmin = alice // a SysAdmin of enclave "tenant"
		user     = bob   // a User of the default enclave
		account  = carol // a service account of sysadmin
	)
	setAdmin := func(id string) *state.Entry {
		return &state.Entry{Op: state.OpSetSettings, By: "h1:root", Settings: map[string]string{state.SettingAdminIdentity: id}}
	}
	newCluster := func(t *testing.T) *state.State {
		s := newState(t)
		mustApply(t, s, &state.Entry{Op: state.OpCreateEnclave, Name: "tenant"})
		mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: "tenant", Name: sysadmin, Identity: &state.IdentityArgs{Privilege: state.SysAdmin}})
		mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: state.DefaultEnclave, Name: user, Identity: &state.IdentityArgs{Privilege: state.User}})
		mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: "tenant", Name: account, By: sysadmin, Identity: &state.IdentityArgs{ServiceAccount: true}})
		mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: "tenant", Name: dave, Identity: &state.IdentityArgs{Privilege: state.SysAdmin}})
		return s
	}

	// Who may become the admin.
	for _, tt := range []struct {
		name, id, want string
	}{
		{"a SysAdmin", sysadmin, ""},
		{"an unregistered identity", "h1:" + strings.Repeat("A", 42) + "E", "is not registered"},
		{"a User", user, "is User, not SysAdmin"},
		{"a service account of a SysAdmin", account, "is a service account"},
		{"not an identity", "k1:secret", "not of the form"},
	} {
		s := newCluster(t)
		err := apply(s, setAdmin(tt.id))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s as admin: %v", tt.name, err)
		case tt.want != "" && (!errors.Is(err, state.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s as admin: %v, want invalid argument %q", tt.name, err, tt.want)
		}
		want := tt.id
		if tt.want != "" {
			want = "" // refused: nothing changed
		}
		if got := s.Admin(); got != want {
			t.Errorf("%s as admin: Admin() = %q, want %q", tt.name, got, want)
		}
		if got := s.Settings()[state.SettingAdminIdentity]; got != want {
			t.Errorf("%s as admin: setting %q, want %q", tt.name, got, want)
		}
	}

	// What may not happen to the admin while it is the admin.
	for _, tt := range []struct {
		name  string
		entry *state.Entry
	}{
		{"delete it", &state.Entry{Op: state.OpDeleteIdentity, Enclave: "tenant", Name: sysadmin}},
		{"demote it", &state.Entry{Op: state.OpCreateIdentity, Enclave: "tenant", Name: sysadmin, Identity: &state.IdentityArgs{Privilege: state.User}}},
		{"make it a service account", &state.Entry{Op: state.OpCreateIdentity, Enclave: "tenant", Name: sysadmin, By: dave, Identity: &state.IdentityArgs{ServiceAccount: true}}},
		{"delete its enclave", &state.Entry{Op: state.OpDeleteEnclave, Name: "tenant"}},
	} {
		s := newCluster(t)
		mustApply(t, s, setAdmin(sysadmin))
		err := apply(s, tt.entry)
		if !errors.Is(err, state.ErrInvalidArgument) || !strings.Contains(err.Error(), "is the cluster's admin") {
			t.Errorf("%s: %v, want it refused as the cluster's admin", tt.name, err)
		}
		if i, err := s.Identity(sysadmin); err != nil || i.Privilege != state.SysAdmin || i.Parent != "" {
			t.Errorf("%s: the admin is now %+v, %v", tt.name, i, err)
		}
		// Once another identity (none) is the admin, the same write goes through.
		mustApply(t, s, setAdmin(""))
		if s.Admin() != "" {
			t.Errorf("%s: Admin() = %q after the reset", tt.name, s.Admin())
		}
		if err := apply(s, tt.entry); err != nil {
			t.Errorf("%s after the admin was reset: %v", tt.name, err)
		}
	}

	// Other identities and enclaves are not protected.
	s := newCluster(t)
	mustApply(t, s, setAdmin(sysadmin))
	mustApply(t, s, &state.Entry{Op: state.OpDeleteIdentity, Enclave: state.DefaultEnclave, Name: user})
	mustApply(t, s, &state.Entry{Op: state.OpDeleteIdentity, Enclave: "tenant", Name: account})
}

// TestAdminSnapshot checks that OnSettings hears who changed what, and
// that the admin comes back with a snapshot, and goes with a reset.
func TestAdminSnapshot(t *testing.T) {
	s := newState(t)
	var updates []state.SettingsUpdate
	s.OnSettings(func(u state.SettingsUpdate) { updates = append(updates, u) })
	mustApply(t, s, &state.Entry{Op: state.OpCreateIdentity, Enclave: state.DefaultEnclave, Name: alice, Identity: &state.IdentityArgs{Privilege: state.SysAdmin}})
	mustApply(t, s, &state.Entry{Op: state.OpSetSettings, By: bob, Settings: map[string]string{state.SettingAdminIdentity: alice, "audit": "off"}})
	if len(updates) != 1 || updates[0].By != bob || updates[0].Changes["audit"] != "off" || updates[0].Settings[state.SettingAdminIdentity] != alice {
		t.Fatalf("OnSettings got %+v, want one update by %s", updates, bob)
	}

	var snap bytes.Buffer
	if err := s.Snapshot(&snap); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, &state.Entry{Op: state.OpSetSettings, By: alice, Settings: map[string]string{state.SettingAdminIdentity: ""}})
	if s.Admin() != "" {
		t.Fatalf("Admin() = %q after the reset of the setting", s.Admin())
	}
	updates = nil
	if err := s.Restore(&snap); err != nil {
		t.Fatal(err)
	}
	if s.Admin() != alice {
		t.Errorf("Admin() = %q after restoring a snapshot, want %s", s.Admin(), alice)
	}
	if len(updates) != 1 || updates[0].Changes != nil || updates[0].Settings[state.SettingAdminIdentity] != alice {
		t.Errorf("OnSettings after restore: %+v, want one update without changes", updates)
	}
	s.Reset()
	if s.Admin() != "" {
		t.Errorf("Admin() = %q after Reset", s.Admin())
	}
}
