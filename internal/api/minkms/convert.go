package minkms

import (
	"strconv"
	"time"

	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keep-kms/keep/internal/cluster"
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
		Type:      string(k.Type()),
		CreatedAt: timestamp(k.CreatedAt),
		CreatedBy: k.CreatedBy,
	}
}

func policyStatus(p state.Policy) *pb.PolicyStatusResponse {
	return &pb.PolicyStatusResponse{Name: p.Name, CreatedAt: timestamp(p.CreatedAt), CreatedBy: p.CreatedBy}
}

func policy(p state.Policy) *pb.PolicyResponse {
	return policyReply(&pb.PolicyResponse{
		Name:      p.Name,
		CreatedAt: timestamp(p.CreatedAt),
		CreatedBy: p.CreatedBy,
	}, p.Allow, p.Deny)
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

func clusterStatus(up map[int]cluster.NodeStatus, down map[int]string) *pb.ClusterStatusResponse {
	resp := &pb.ClusterStatusResponse{NodesUp: map[uint32]*pb.ServerStatusResponse{}, NodesDown: map[uint32]string{}}
	for id, st := range up {
		resp.NodesUp[uint32(id)] = serverStatus(st) // #nosec G115 -- raft node IDs are small indexes of the cluster configuration
	}
	for id, host := range down {
		resp.NodesDown[uint32(id)] = host // #nosec G115 -- raft node IDs are small indexes of the cluster configuration
	}
	return resp
}

func serverStatus(st cluster.NodeStatus) *pb.ServerStatusResponse {
	nodes := make(map[uint32]string, len(st.Nodes))
	for id, host := range st.Nodes {
		if n, err := strconv.ParseUint(id, 10, 32); err == nil {
			nodes[uint32(n)] = host
		}
	}
	id, _ := strconv.ParseUint(st.ID, 10, 32)
	leader := int64(-1)
	if l, err := strconv.ParseInt(st.LeaderID, 10, 64); err == nil {
		leader = l
	}
	msg := &pb.ServerStatusResponse{
		Version:           st.Version,
		APIVersion:        "v1",
		Host:              st.Host,
		UpTime:            durationpb.New(st.Uptime),
		Role:              st.Role,
		Commit:            st.Commit,
		Nodes:             nodes,
		ID:                uint32(id),
		LeaderID:          leader,
		LastHeartbeat:     durationpb.New(st.LastContact),
		HeartbeatInterval: durationpb.New(st.HeartbeatInterval),
		ElectionTimeout:   durationpb.New(st.ElectionTimeout),
		OS:                st.OS,
		Arch:              st.Arch,
		CPUs:              uint32(st.CPUs),       // #nosec G115 -- a CPU count
		UsableCPUs:        uint32(st.UsableCPUs), // #nosec G115 -- a CPU count
		HeapMemInUse:      st.HeapInUse,
		StackMemInUse:     st.StackInUse,
	}
	msg.ProtoReflect().SetUnknown(hsmFields(st))
	return msg
}
