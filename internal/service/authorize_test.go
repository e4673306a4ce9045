package service

import (
	"testing"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/state"
)

func TestAllows(t *testing.T) {
	p := state.Policy{
		Allow: map[string][]string{
			"KEY:GENERATE": {"minio-*"},
			"KEY:DECRYPT":  {"*"},
			"KEY:STATUS":   {"exact"},
			"KEY:CREATE":   {"new-*"},
			"KEY:IMPORT":   {"imp-*"},
			"KEY:LIST":     {},
			"POLICY:LIST":  {"*"},
		},
		Deny: map[string][]string{
			"KEY:DECRYPT": {"secret"},
			"POLICY:LIST": {},
		},
	}
	tests := []struct {
		cmd      cmds.Command
		resource string
		want     bool
	}{
		{cmds.KeyGenerate, "minio-default-key", true},
		{cmds.KeyGenerate, "minio-", true},
		{cmds.KeyGenerate, "other", false},
		{cmds.KeyDecrypt, "anything", true},
		{cmds.KeyDecrypt, "secret", false}, // deny wins over allow
		{cmds.KeyStatus, "exact", true},
		{cmds.KeyStatus, "exactly", false},
		{cmds.KeyDelete, "minio-default-key", false}, // no rule: denied
		{cmds.KeyImport, "new-key", false},           // KEY:CREATE does not grant import
		{cmds.KeyImport, "imp-key", true},            // KEY:IMPORT does
		{cmds.KeyCreate, "imp-key", false},           // and grants no creation
		{cmdKeyMAC, "minio-default-key", true},       // MAC follows KEY:GENERATE
		{cmdKeyMAC, "other", false},
		{cmds.KeyList, "", true},     // a list needs any allow rule
		{cmds.PolicyList, "", false}, // and no deny rule
		{cmds.IdentityList, "", false},
	}
	for _, tt := range tests {
		if got := allows(p, tt.cmd, tt.resource); got != tt.want {
			t.Errorf("allows(%s, %q) = %v, want %v", tt.cmd, tt.resource, got, tt.want)
		}
	}
}

func TestNormalizeRules(t *testing.T) {
	got, err := normalizeRules(map[string][]string{"key:generate": {"b", "", "a", "b"}, "key:import": {"i"}, "!INVALID:203": {"j"}})
	if err != nil {
		t.Fatal(err)
	}
	if p := got["KEY:GENERATE"]; len(p) != 2 || p[0] != "a" || p[1] != "b" {
		t.Fatalf("normalized rules = %v", got)
	}
	// KEY:IMPORT, as the pinned client sends it too, is stored as KEY:IMPORT.
	if p := got[state.RuleKeyImport]; len(got) != 2 || len(p) != 2 || p[0] != "i" || p[1] != "j" {
		t.Fatalf("normalized import rules = %v", got)
	}
	for _, bad := range []string{"KEY:NOPE", "CLUSTER:ADDNODE", "ENCLAVE:CREATE", "", "!INVALID:210", "KEY:MAC"} {
		if _, err := normalizeRules(map[string][]string{bad: {"*"}}); err == nil {
			t.Errorf("rule for %q accepted", bad)
		}
	}
}

func TestParsePrivilege(t *testing.T) {
	tests := []struct {
		in   string
		want state.Privilege
		ok   bool
	}{
		{"", state.User, true},
		{"User", state.User, true},
		{"Admin", state.Admin, true},
		{"SysAdmin", state.SysAdmin, true},
		{"admin", 0, false},
		{"root", 0, false},
	}
	for _, tt := range tests {
		got, err := ParsePrivilege(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParsePrivilege(%q) = %v, %v", tt.in, got, err)
		}
	}
}
