package minkms

import (
	"context"

	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/proto"

	"github.com/keep-kms/keep/internal/service"
)

// commands is the command table of spec §3.3: each number, its request
// message and the service call behind it.
var commands = map[cmds.Command]command{
	cmds.ClusterAddNode: handle(func(ctx context.Context, a *API, c service.Caller, _ string, r *pb.AddClusterNodeRequest) (proto.Message, error) {
		return nil, a.svc.AddNode(ctx, c, r.Host)
	}),
	cmds.ClusterRemoveNode: handle(func(ctx context.Context, a *API, c service.Caller, _ string, r *pb.RemoveClusterNodeRequest) (proto.Message, error) {
		return nil, a.svc.RemoveNode(ctx, c, r.Host, r.DeleteClusterOnHost)
	}),
	cmds.ClusterEdit: handle(func(ctx context.Context, a *API, c service.Caller, _ string, r *pb.EditClusterRequest) (proto.Message, error) {
		return nil, a.svc.EditCluster(ctx, c, r.RemoveIDs)
	}),
	// CLUSTER:ADDHSM (5) and CLUSTER:REMOVEHSM (6) came after the pinned
	// kms-go: AddHSMRequest is wire-identical to RemoveClusterNodeRequest
	// (name, overwrite), RemoveHSMRequest to CreateEnclaveRequest (name),
	// spec upstream §11.
	service.ClusterAddHSM: handle(func(ctx context.Context, a *API, c service.Caller, _ string, r *pb.RemoveClusterNodeRequest) (proto.Message, error) {
		return nil, a.svc.AddHSM(ctx, c, r.Host, r.DeleteClusterOnHost)
	}),
	service.ClusterRemoveHSM: handle(func(ctx context.Context, a *API, c service.Caller, _ string, r *pb.CreateEnclaveRequest) (proto.Message, error) {
		return nil, a.svc.RemoveHSM(ctx, c, r.Name)
	}),
	cmds.ClusterStatus: handle(func(ctx context.Context, a *API, c service.Caller, _ string, _ *pb.ClusterStatusRequest) (proto.Message, error) {
		up, down, err := a.svc.ClusterStatus(ctx, c)
		return clusterStatus(up, down), err
	}),

	cmds.EnclaveCreate: handle(func(ctx context.Context, a *API, c service.Caller, _ string, r *pb.CreateEnclaveRequest) (proto.Message, error) {
		return nil, a.svc.CreateEnclave(ctx, c, r.Name)
	}),
	cmds.EnclaveDelete: handle(func(ctx context.Context, a *API, c service.Caller, _ string, r *pb.DeleteEnclaveRequest) (proto.Message, error) {
		return nil, a.svc.DeleteEnclave(ctx, c, r.Name)
	}),
	cmds.EnclaveStatus: handle(func(_ context.Context, a *API, c service.Caller, _ string, r *pb.EnclaveStatusRequest) (proto.Message, error) {
		e, err := a.svc.EnclaveStatus(c, r.Name)
		return enclaveStatus(e), err
	}),
	cmds.EnclaveList: handle(func(_ context.Context, a *API, c service.Caller, _ string, r *pb.ListRequest) (proto.Message, error) {
		list, next, err := a.svc.ListEnclaves(c, r.Prefix, r.ContinueAt, int(r.Limit))
		return &pb.ListEnclavesResponse{Enclaves: mapSlice(list, enclaveStatus), ContinueAt: next}, err
	}),

	cmds.KeyCreate: handle(func(ctx context.Context, a *API, c service.Caller, enclave string, r *pb.CreateKeyRequest) (proto.Message, error) {
		return nil, a.svc.CreateKey(ctx, c, enclave, r.Name, r.Type, r.AddVersion)
	}),
	cmds.KeyImport: handle(func(ctx context.Context, a *API, c service.Caller, enclave string, r *pb.ImportKeyRequest) (proto.Message, error) {
		return nil, a.svc.ImportKey(ctx, c, enclave, r.Name, r.Type, r.Key)
	}),
	cmds.KeyDelete: handle(func(ctx context.Context, a *API, c service.Caller, enclave string, r *pb.DeleteKeyRequest) (proto.Message, error) {
		return nil, a.svc.DeleteKey(ctx, c, enclave, r.Name, r.Version, r.AllVersions)
	}),
	cmds.KeyStatus: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.KeyStatusRequest) (proto.Message, error) {
		k, err := a.svc.KeyStatus(c, enclave, r.Name, r.Version)
		return keyStatus(k), err
	}),
	cmds.KeyList: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.ListRequest) (proto.Message, error) {
		list, next, err := a.svc.ListKeys(c, enclave, r.Prefix, r.ContinueAt, int(r.Limit))
		return &pb.ListKeysResponse{Keys: mapSlice(list, keyStatus), ContinueAt: next}, err
	}),
	cmds.KeyListVersions: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.KeyStatusRequest) (proto.Message, error) {
		list, err := a.svc.KeyVersions(c, enclave, r.Name)
		return &pb.ListKeysResponse{Keys: mapSlice(list, keyStatus)}, err
	}),
	cmds.KeyEncrypt: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.EncryptRequest) (proto.Message, error) {
		v, ciphertext, err := a.svc.Encrypt(c, enclave, r.Name, r.Version, r.Plaintext, r.AssociatedData)
		return &pb.EncryptResponse{Version: v, Ciphertext: ciphertext}, err
	}),
	cmds.KeyDecrypt: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.DecryptRequest) (proto.Message, error) {
		plaintext, err := a.svc.Decrypt(c, enclave, r.Name, r.Version, r.Ciphertext, r.AssociatedData)
		return &pb.DecryptResponse{Plaintext: plaintext}, err
	}),
	// KEY:MAC (210) came after the pinned kms-go, which has no MACRequest
	// or MACResponse: their fields and numbers are EncryptRequest's (name,
	// version, the message as plaintext) and EncryptResponse's (version,
	// the MAC as ciphertext), spec upstream §10.
	service.KeyMAC: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.EncryptRequest) (proto.Message, error) {
		v, mac, err := a.svc.MAC(c, enclave, r.Name, r.Version, r.Plaintext)
		return &pb.EncryptResponse{Version: v, Ciphertext: mac}, err
	}),
	cmds.KeyGenerate: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.GenerateKeyRequest) (proto.Message, error) {
		v, plaintext, ciphertext, err := a.svc.GenerateKey(c, enclave, r.Name, r.Version, r.AssociatedData, int(r.Length))
		return &pb.GenerateKeyResponse{Version: v, Plaintext: plaintext, Ciphertext: ciphertext}, err
	}),

	cmds.PolicyCreate: handle(func(ctx context.Context, a *API, c service.Caller, enclave string, r *pb.CreatePolicyRequest) (proto.Message, error) {
		return nil, a.svc.CreatePolicy(ctx, c, enclave, r.Name, fromRuleSets(r.Allow), fromRuleSets(r.Deny))
	}),
	cmds.PolicyDelete: handle(func(ctx context.Context, a *API, c service.Caller, enclave string, r *pb.DeletePolicyRequest) (proto.Message, error) {
		return nil, a.svc.DeletePolicy(ctx, c, enclave, r.Name)
	}),
	cmds.PolicyAssign: handle(func(ctx context.Context, a *API, c service.Caller, enclave string, r *pb.AssignPolicyRequest) (proto.Message, error) {
		return nil, a.svc.AssignPolicy(ctx, c, enclave, r.Identity, r.Policy)
	}),
	cmds.PolicyGet: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.PolicyRequest) (proto.Message, error) {
		p, err := a.svc.Policy(c, enclave, r.Name)
		return policy(p), err
	}),
	cmds.PolicyStatus: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.PolicyRequest) (proto.Message, error) {
		p, err := a.svc.PolicyStatus(c, enclave, r.Name)
		return policyStatus(p), err
	}),
	cmds.PolicyList: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.ListRequest) (proto.Message, error) {
		list, next, err := a.svc.ListPolicies(c, enclave, r.Prefix, r.ContinueAt, int(r.Limit))
		return &pb.ListPoliciesResponse{Policies: mapSlice(list, policyStatus), ContinueAt: next}, err
	}),

	cmds.IdentityCreate: handle(func(ctx context.Context, a *API, c service.Caller, enclave string, r *pb.CreateIdentityRequest) (proto.Message, error) {
		priv, err := service.ParsePrivilege(r.Privilege)
		if err != nil {
			return nil, err
		}
		return nil, a.svc.CreateIdentity(ctx, c, enclave, r.Identity, priv, r.IsServiceAccount, r.Tags)
	}),
	cmds.IdentityDelete: handle(func(ctx context.Context, a *API, c service.Caller, enclave string, r *pb.DeleteIdentityRequest) (proto.Message, error) {
		return nil, a.svc.DeleteIdentity(ctx, c, enclave, r.Identity)
	}),
	cmds.IdentityGet: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.IdentityRequest) (proto.Message, error) {
		i, err := a.svc.Identity(c, enclave, r.Identity)
		return identity(i), err
	}),
	cmds.IdentityList: handle(func(_ context.Context, a *API, c service.Caller, enclave string, r *pb.ListRequest) (proto.Message, error) {
		list, next, err := a.svc.ListIdentities(c, enclave, r.Prefix, r.ContinueAt, int(r.Limit))
		return &pb.ListIdentitiesResponse{Identities: mapSlice(list, identity), ContinueAt: next}, err
	}),
}
