package service

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/state"
)

// Identities of the Admit tests.
var (
	root     = testIdentity("root")
	sysAdmin = testIdentity("sysadmin")
	admin    = testIdentity("admin")
	user     = testIdentity("user")
	outsider = testIdentity("outsider") // a User of enclave b
	stranger = testIdentity("stranger") // registered nowhere
)

// testIdentity is an identity (h1:) made from a name.
func testIdentity(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "h1:" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// admitService returns a Service over a state with enclaves a and b, a
// SysAdmin, an Admin and a User (policy: KEY:GENERATE on k*) of a, and a
// User of b; root is its root identity.
func admitService(t testing.TB) (*Service, *state.State) {
	t.Helper()
	st, _ := initializedState(t)
	for _, e := range []*state.Entry{
		{Op: state.OpCreateEnclave, Name: "a"},
		{Op: state.OpCreateEnclave, Name: "b"},
		{Op: state.OpCreateIdentity, Enclave: "a", Name: sysAdmin, Identity: &state.IdentityArgs{Privilege: state.SysAdmin}},
		{Op: state.OpCreateIdentity, Enclave: "a", Name: admin, Identity: &state.IdentityArgs{Privilege: state.Admin}},
		{Op: state.OpCreateIdentity, Enclave: "a", Name: user, Identity: &state.IdentityArgs{Privilege: state.User}},
		{Op: state.OpCreateIdentity, Enclave: "b", Name: outsider, Identity: &state.IdentityArgs{Privilege: state.User}},
		{Op: state.OpCreatePolicy, Enclave: "a", Name: "p", Policy: &state.PolicyArgs{Allow: map[string][]string{"KEY:GENERATE": {"k*"}}}},
		{Op: state.OpAssignPolicy, Enclave: "a", Name: user, Assign: "p"},
	} {
		data, err := st.EncodeEntry(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(data); err != nil {
			t.Fatalf("apply %s %s: %v", e.Op, e.Name, err)
		}
	}
	return New(st, nil, root), st
}

// TestAdmit checks every kind of access a route can declare against every
// kind of caller.
func TestAdmit(t *testing.T) {
	s, st := admitService(t)
	generate := Requirement{Access: EnclaveCommand, Command: cmds.KeyGenerate}
	tests := []struct {
		name     string
		need     Requirement
		enclave  string
		resource string
		admitted []string // every other caller is refused
	}{
		{"public", Requirement{Access: Public}, "", "", []string{"", stranger, user, outsider, admin, sysAdmin, root}},
		{"known", Requirement{Access: Known}, "", "", []string{user, outsider, admin, sysAdmin, root}},
		{"sysadmin", Requirement{Access: SysAdmin}, "", "", []string{sysAdmin, root}},
		{"metrics, sysadmin", Requirement{Access: Metrics}, "", "", []string{sysAdmin, root}},
		{"enclave member", Requirement{Access: EnclaveMember}, "a", "", []string{user, admin, sysAdmin, root}},
		{"enclave member of b", Requirement{Access: EnclaveMember}, "b", "", []string{outsider, sysAdmin, root}},
		{"command allowed by policy", generate, "a", "k1", []string{user, admin, sysAdmin, root}},
		{"command on another resource", generate, "a", "x", []string{admin, sysAdmin, root}},
		{"command in another enclave", generate, "b", "k1", []string{sysAdmin, root}},
		{"cluster command", Requirement{Access: EnclaveCommand, Command: cmds.EnclaveCreate}, "a", "", []string{sysAdmin, root}},
		{"undeclared", Requirement{}, "a", "", nil},
	}
	callers := []string{"", stranger, user, outsider, admin, sysAdmin, root}
	for _, tt := range tests {
		for _, c := range callers {
			want := false
			for _, a := range tt.admitted {
				want = want || a == c
			}
			err := s.Admit(Caller{Identity: c}, tt.need, tt.enclave, tt.resource)
			if want && err != nil {
				t.Errorf("%s: caller %q refused: %v", tt.name, c, err)
			}
			if !want && !errors.Is(err, ErrPermission) {
				t.Errorf("%s: caller %q admitted (err %v)", tt.name, c, err)
			}
		}
	}

	// metrics.auth=public opens the metrics to anyone.
	data, _ := st.EncodeEntry(&state.Entry{Op: state.OpSetSettings, Settings: map[string]string{SettingMetricsAuth: "public"}})
	if err := st.Apply(data); err != nil {
		t.Fatal(err)
	}
	for _, c := range callers {
		if err := s.Admit(Caller{Identity: c}, Requirement{Access: Metrics}, "", ""); err != nil {
			t.Errorf("metrics.auth=public: caller %q refused: %v", c, err)
		}
	}
}

func TestLimitSettings(t *testing.T) {
	for _, tt := range []struct {
		name, value string
		ok          bool
	}{
		{SettingLimitsRate, "1000", true},
		{SettingLimitsRate, "0.5", true},
		{SettingLimitsRate, "0", true},
		{SettingLimitsRate, "-1", false},
		{SettingLimitsRate, "fast", false},
		{SettingLimitsRate, "NaN", false},
		{SettingLimitsBurst, "2000", true},
		{SettingLimitsBurst, "0", true},
		{SettingLimitsBurst, "1.5", false},
		{SettingLimitsBurst, "-3", false},
	} {
		valid, ok := settings[tt.name]
		if !ok {
			t.Fatalf("setting %s is not registered", tt.name)
		}
		if err := valid(tt.value); (err == nil) != tt.ok {
			t.Errorf("%s=%s: err = %v, want ok=%v", tt.name, tt.value, err, tt.ok)
		}
	}
}

// BenchmarkAdmitKnown is what the router adds to every /v1/kms request:
// the check that the caller is known, for the root identity and for a
// registered one, on a node that does not trust the HSMs' root API keys
// (its root is its config's admin.identity) and on one that does (the
// default: a registered caller is then also looked for among them).
func BenchmarkAdmitKnown(b *testing.B) {
	for _, trust := range []bool{false, true} {
		s, _ := admitService(b)
		name := ""
		if trust {
			s.TrustHSMRoots()
			name = ", HSM roots"
		}
		for _, c := range []string{root, user} {
			b.Run(map[string]string{root: "root", user: "registered"}[c]+name, func(b *testing.B) {
				for b.Loop() {
					if err := s.Admit(Caller{Identity: c}, Requirement{Access: Known}, "", ""); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
