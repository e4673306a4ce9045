package minkms

import (
	"fmt"

	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The rules of a policy that the pinned kms-go cannot parse (KEY:IMPORT,
// which it numbers but does not name) must not be in a POLICY:GET reply's
// Allow and Deny maps: its client refuses the whole reply then. Keep sends
// them as fields the client does not know and skips: maps of the same shape
// as Allow (field 2) and Deny (field 3), under these numbers. The keep CLI
// reads them back (PolicyExtraRules); JSON replies leave them out.
const (
	fieldAllow      = 2
	fieldDeny       = 3
	fieldExtraAllow = 102
	fieldExtraDeny  = 103
)

// policyReply builds the POLICY:GET reply for rules keyed by the command
// texts Keep stores.
func policyReply(msg *pb.PolicyResponse, allow, deny map[string][]string) *pb.PolicyResponse {
	var extra pb.PolicyResponse
	msg.Allow, extra.Allow = splitRules(allow)
	msg.Deny, extra.Deny = splitRules(deny)
	if len(extra.Allow)+len(extra.Deny) > 0 {
		b, err := proto.Marshal(&extra)
		if err == nil { // a message of maps of strings always marshals
			msg.ProtoReflect().SetUnknown(renumber(b, map[protowire.Number]protowire.Number{fieldAllow: fieldExtraAllow, fieldDeny: fieldExtraDeny}))
		}
	}
	return msg
}

// splitRules converts rules into rule sets, those the pinned client can
// parse apart from the others.
func splitRules(rules map[string][]string) (known, other map[string]*pb.RuleSet) {
	known = make(map[string]*pb.RuleSet, len(rules))
	for cmd, patterns := range rules {
		set := &pb.RuleSet{Rules: make(map[string]*pb.Rule, len(patterns))}
		for _, p := range patterns {
			set.Rules[p] = &pb.Rule{}
		}
		if _, err := cmds.Parse(cmd); err == nil {
			known[cmd] = set
			continue
		}
		if other == nil {
			other = map[string]*pb.RuleSet{}
		}
		other[cmd] = set
	}
	return known, other
}

// PolicyExtraRules returns the rules of a POLICY:GET reply that the pinned
// kms-go cannot parse and Keep sends beside its Allow and Deny maps, keyed
// by command text (KEY:IMPORT).
func PolicyExtraRules(msg *pb.PolicyResponse) (allow, deny map[string][]string, err error) {
	var extra pb.PolicyResponse
	b := renumber(msg.ProtoReflect().GetUnknown(), map[protowire.Number]protowire.Number{fieldExtraAllow: fieldAllow, fieldExtraDeny: fieldDeny})
	if err := proto.Unmarshal(b, &extra); err != nil {
		return nil, nil, fmt.Errorf("malformed policy rules: %w", err)
	}
	return fromRuleSets(extra.Allow), fromRuleSets(extra.Deny), nil
}

// renumber returns the fields of b whose numbers are keys of to, under
// their new numbers, and drops the others.
func renumber(b []byte, to map[protowire.Number]protowire.Number) []byte {
	var out []byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return out
		}
		if newNum, ok := to[num]; ok {
			out = protowire.AppendTag(out, newNum, typ)
			out = append(out, b[n:n+m]...)
		}
		b = b[n+m:]
	}
	return out
}
