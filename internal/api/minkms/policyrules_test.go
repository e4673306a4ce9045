package minkms

import (
	"maps"
	"slices"
	"testing"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/keep-kms/keep/internal/state"
)

// TestPolicyReply: a policy with KEY:IMPORT rules goes out so that the
// pinned client parses the reply (without them) and PolicyExtraRules reads
// them back; JSON replies leave them out.
func TestPolicyReply(t *testing.T) {
	tests := []struct {
		name        string
		allow, deny map[string][]string
		extraAllow  map[string][]string
		extraDeny   map[string][]string
	}{
		{"no import rules", map[string][]string{"KEY:GENERATE": {"*"}}, nil, map[string][]string{}, map[string][]string{}},
		{"import allowed", map[string][]string{"KEY:GENERATE": {"a*"}, state.RuleKeyImport: {"i-*", "j"}}, map[string][]string{"KEY:DELETE": {"*"}},
			map[string][]string{state.RuleKeyImport: {"i-*", "j"}}, map[string][]string{}},
		{"import denied", nil, map[string][]string{state.RuleKeyImport: {"*"}}, map[string][]string{}, map[string][]string{state.RuleKeyImport: {"*"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := policy(state.Policy{Name: "p", Allow: tt.allow, Deny: tt.deny})
			wire, err := proto.Marshal(msg)
			if err != nil {
				t.Fatal(err)
			}
			var got pb.PolicyResponse
			if err := proto.Unmarshal(wire, &got); err != nil {
				t.Fatal(err)
			}
			var client kms.PolicyResponse
			if err := client.UnmarshalPB(&got); err != nil {
				t.Fatalf("the pinned client cannot parse the reply: %v", err)
			}
			for cmd := range tt.allow {
				if _, ok := client.Allow[mustParse(cmd)]; !ok && cmd != state.RuleKeyImport {
					t.Errorf("the client lost allow %s", cmd)
				}
			}
			allow, deny, err := PolicyExtraRules(&got)
			if err != nil {
				t.Fatal(err)
			}
			same := func(a, b map[string][]string) bool {
				return maps.EqualFunc(a, b, func(x, y []string) bool {
					return slices.Equal(slices.Sorted(slices.Values(x)), slices.Sorted(slices.Values(y)))
				})
			}
			if !same(allow, tt.extraAllow) || !same(deny, tt.extraDeny) {
				t.Errorf("extra rules: allow %v deny %v, want %v %v", allow, deny, tt.extraAllow, tt.extraDeny)
			}
			if _, err := protojson.Marshal(msg); err != nil {
				t.Errorf("JSON reply: %v", err)
			}
		})
	}
}

func mustParse(text string) cmds.Command {
	c, _ := cmds.Parse(text)
	return c
}

// FuzzPolicyExtraRules feeds arbitrary POLICY:GET replies to the decoder
// of the rules beside Allow and Deny: it must fail cleanly or return rules,
// never panic.
func FuzzPolicyExtraRules(f *testing.F) {
	seed, _ := proto.Marshal(policy(state.Policy{Name: "p", Allow: map[string][]string{state.RuleKeyImport: {"i-*"}}, Deny: map[string][]string{state.RuleKeyImport: {"x"}}}))
	f.Add(seed)
	f.Add([]byte{0xa2, 0x06, 0x03, 0x0a, 0x01, 0x41}) // field 100, truncated entry
	f.Add([]byte{0xb2, 0x06, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var msg pb.PolicyResponse
		if proto.Unmarshal(data, &msg) != nil {
			return
		}
		_, _, _ = PolicyExtraRules(&msg)
	})
}
