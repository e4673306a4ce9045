package minkms

import (
	"time"

	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keep-kms/keep/internal/state"
)

// The conversions from state values to wire messages.

func mapSlice[T, M any](list []T, f func(T) M) []M {
	out := make([]M, 0, len(list))
	for _, v := range list {
		out = append(out, f(v))
	}
	return out
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func enclaveStatus(e state.Enclave) *pb.EnclaveStatusResponse {
	return &pb.EnclaveStatusResponse{Name: e.Name, CreatedAt: timestamp(e.CreatedAt), CreatedBy: e.CreatedBy}
}

func keyStatus(k state.KeyVersion) *pb.KeyStatusResponse {
	return &pb.KeyStatusResponse{
		Name:      k.Name,
		Version:   k.Version,
		Type:      string(k.Key.Type()),
		CreatedAt: timestamp(k.CreatedAt),
		CreatedBy: k.CreatedBy,
	}
}

func policyStatus(p state.Policy) *pb.PolicyStatusResponse {
	return &pb.PolicyStatusResponse{Name: p.Name, CreatedAt: timestamp(p.CreatedAt), CreatedBy: p.CreatedBy}
}

func policy(p state.Policy) *pb.PolicyResponse {
	return &pb.PolicyResponse{
		Name:      p.Name,
		Allow:     toRuleSets(p.Allow),
		Deny:      toRuleSets(p.Deny),
		CreatedAt: timestamp(p.CreatedAt),
		CreatedBy: p.CreatedBy,
	}
}

func toRuleSets(rules map[string][]string) map[string]*pb.RuleSet {
	out := make(map[string]*pb.RuleSet, len(rules))
	for cmd, patterns := range rules {
		set := &pb.RuleSet{Rules: make(map[string]*pb.Rule, len(patterns))}
		for _, p := range patterns {
			set.Rules[p] = &pb.Rule{}
		}
		out[cmd] = set
	}
	return out
}

func fromRuleSets(sets map[string]*pb.RuleSet) map[string][]string {
	out := make(map[string][]string, len(sets))
	for cmd, set := range sets {
		patterns := make([]string, 0, len(set.GetRules()))
		for p := range set.GetRules() {
			patterns = append(patterns, p)
		}
		out[cmd] = patterns
	}
	return out
}

func identity(i state.Identity) *pb.IdentityResponse {
	return &pb.IdentityResponse{
		Identity:         i.ID,
		Privilege:        uint32(i.Privilege),
		Policy:           i.Policy,
		CreatedAt:        timestamp(i.CreatedAt),
		CreatedBy:        i.CreatedBy,
		IsServiceAccount: i.Parent != "",
		ServiceAccounts:  i.ServiceAccounts,
		Tags:             i.Tags,
	}
}
