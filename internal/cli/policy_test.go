package cli

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
)

func TestParsePolicy(t *testing.T) {
	rules := func(patterns ...string) kms.RuleSet {
		set := kms.RuleSet{}
		for _, p := range patterns {
			set[p] = kms.Rule{}
		}
		return set
	}
	tests := []struct {
		name    string
		in      string
		allow   map[cmds.Command]kms.RuleSet
		deny    map[cmds.Command]kms.RuleSet
		wantErr string
	}{
		{
			name:  "string",
			in:    `{"allow": {"KEY:GENERATE": "my-key*"}}`,
			allow: map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: rules("my-key*")},
		},
		{
			name: "array and object, allow and deny",
			in: `{"allow": {"KEY:GENERATE": ["a", "b"], "key:decrypt": {"a": {}}},
			      "deny": {"KEY:DELETE": "*"}}`,
			allow: map[cmds.Command]kms.RuleSet{cmds.KeyGenerate: rules("a", "b"), cmds.KeyDecrypt: rules("a")},
			deny:  map[cmds.Command]kms.RuleSet{cmds.KeyDelete: rules("*")},
		},
		{
			name:  "empty patterns are dropped",
			in:    `{"allow": {"KEY:STATUS": ["", "x"]}}`,
			allow: map[cmds.Command]kms.RuleSet{cmds.KeyStatus: rules("x")},
		},
		{
			name: "empty object",
			in:   `{}`,
		},
		{
			name: "get-policy output is accepted",
			in: `{"name": "p", "allow": {"KEY:LIST": "*"}, "deny": {},
			      "created_at": "2025-01-01T00:00:00Z", "created_by": "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0"}`,
			allow: map[cmds.Command]kms.RuleSet{cmds.KeyList: rules("*")},
		},
		{
			name:  "KEY:IMPORT, which kms-go does not name",
			in:    `{"allow": {"KEY:IMPORT": "imp-*"}, "deny": {"key:import": "imp-secret"}}`,
			allow: map[cmds.Command]kms.RuleSet{cmds.KeyImport: rules("imp-*")},
			deny:  map[cmds.Command]kms.RuleSet{cmds.KeyImport: rules("imp-secret")},
		},
		{name: "unknown command", in: `{"allow": {"KEY:FLY": "*"}}`, wantErr: `allow: unknown command "KEY:FLY"`},
		{name: "cluster command", in: `{"deny": {"CLUSTER:STATUS": "*"}}`, wantErr: `deny: policies cannot grant or deny CLUSTER:STATUS`},
		{name: "unknown field", in: `{"alow": {"KEY:GENERATE": "*"}}`, wantErr: `unknown field "alow"`},
		{name: "trailing data", in: `{} {}`, wantErr: "unexpected data"},
		{name: "empty file", in: ``, wantErr: "empty"},
		{name: "not JSON", in: `allow: x`, wantErr: "invalid character"},
		{name: "bad rule set", in: `{"deny": {"KEY:GENERATE": 1}}`, wantErr: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parsePolicy([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			equal := func(a, b map[cmds.Command]kms.RuleSet) bool {
				return maps.EqualFunc(a, b, func(x, y kms.RuleSet) bool { return maps.Equal(x, y) })
			}
			if !equal(p.Allow, tt.allow) || !equal(p.Deny, tt.deny) {
				t.Errorf("got allow %v deny %v, want allow %v deny %v", p.Allow, p.Deny, tt.allow, tt.deny)
			}
		})
	}
}

func TestWriteRules(t *testing.T) {
	var b strings.Builder
	tab := newTable(&b)
	writeRules(tab, "allow", rulesByName(map[cmds.Command]kms.RuleSet{
		cmds.KeyGenerate: {"my-key*": {}, "a": {}, "bb": {}},
		cmds.KeyDecrypt:  {"*": {}},
		cmds.KeyImport:   {"i-*": {}},
	}))
	if err := tab.flush(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := []string{"allow  KEY:DECRYPT   *", "allow  KEY:GENERATE  a, bb, my-key*", "allow  KEY:IMPORT    i-*"}
	if !slices.Equal(lines, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
