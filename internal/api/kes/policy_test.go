package kes

import (
	"maps"
	"slices"
	"testing"

	"aead.dev/mtls"
	"github.com/keep-kms/keep/internal/identity"
)

func TestKESRules(t *testing.T) {
	k, _ := mtls.GenerateKeyEdDSA(nil)
	h1 := k.Identity().String()
	tests := []struct {
		name  string
		rules map[string][]string
		want  []string
	}{
		{"none", nil, nil},
		{"generate", map[string][]string{"KEY:GENERATE": {"minio-*"}}, []string{"/v1/key/generate/minio-*", "/v1/key/hmac/minio-*"}},
		{"create", map[string][]string{"KEY:CREATE": {"new"}}, []string{"/v1/key/create/new"}},
		{"import", map[string][]string{"KEY:IMPORT": {"imp-*"}}, []string{"/v1/key/import/imp-*"}},
		{"crypto", map[string][]string{"KEY:DECRYPT": {"*"}, "KEY:ENCRYPT": {"a", "b"}}, []string{"/v1/key/bulk/decrypt/*", "/v1/key/decrypt/*", "/v1/key/encrypt/a", "/v1/key/encrypt/b"}},
		{"status and delete", map[string][]string{"KEY:STATUS": {"k"}, "KEY:DELETE": {"k*"}}, []string{"/v1/key/delete/k*", "/v1/key/describe/k"}},
		{"lists name no resource", map[string][]string{"KEY:LIST": {}, "POLICY:LIST": {"x"}, "IDENTITY:LIST": {"*"}}, []string{"/v1/identity/list/*", "/v1/key/list/*", "/v1/policy/list/*"}},
		{"policies", map[string][]string{"POLICY:GET": {"p"}, "POLICY:STATUS": {"*"}}, []string{"/v1/policy/describe/*", "/v1/policy/read/p"}},
		{"identities in hex", map[string][]string{"IDENTITY:STATUS": {h1, "*"}}, []string{"/v1/identity/describe/*", "/v1/identity/describe/" + identity.Hex(h1)}},
		{"no KES route", map[string][]string{"KEY:LISTVERSIONS": {"*"}, "POLICY:CREATE": {"*"}, "IDENTITY:CREATE": {"*"}}, nil},
	}
	for _, tt := range tests {
		got := slices.Sorted(maps.Keys(kesRules(tt.rules)))
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: kesRules = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestPathOf(t *testing.T) {
	k, _ := mtls.GenerateKeyEdDSA(nil)
	h1 := k.Identity().String()
	tests := []struct{ command, resource, want string }{
		{"KEY:GENERATE", "minio-key", "/v1/key/generate/minio-key"},
		{"KEY:IMPORT", "k", "/v1/key/import/k"},
		{"KEY:MAC", "k", "/v1/key/hmac/k"},
		{"KEY:LIST", "", "/v1/key/list/"},
		{"KEY:LIST", "my*", "/v1/key/list/my*"},
		{"POLICY:GET", "p", "/v1/policy/read/p"},
		{"IDENTITY:STATUS", h1, "/v1/identity/describe/" + identity.Hex(h1)},
		{"IDENTITY:STATUS", "", "/v1/identity/self/describe"},
		{"/v1/status", "", "/v1/status"},
		{"CLUSTER:STATUS", "", "CLUSTER:STATUS"},
		{"ENCLAVE:CREATE", "tenant", "ENCLAVE:CREATE/tenant"},
	}
	for _, tt := range tests {
		if got := pathOf(tt.command, tt.resource); got != tt.want {
			t.Errorf("pathOf(%s, %s) = %s, want %s", tt.command, tt.resource, got, tt.want)
		}
	}
}
