package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"
	pb "github.com/minio/kms-go/kms/protobuf"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/service"
)

// The commands of the cluster's HSMs, CLUSTER:ADDHSM (5) and
// CLUSTER:REMOVEHSM (6), came after the pinned kms-go, which has no
// methods for them: add-hsm and rm-hsm send their frames with Client.Send.
// AddHSMRequest{Name, Overwrite} is wire-identical to the pinned
// RemoveClusterNodeRequest{Host, DeleteClusterOnHost}, RemoveHSMRequest{Name}
// to CreateEnclaveRequest{Name} (spec upstream §11.3, §15).

func (a *app) addHSMCommand() *cobra.Command {
	var (
		name      string
		host      string
		overwrite bool
	)
	cmd := &cobra.Command{
		Use:   "add-hsm NAME [--overwrite] [--host HOST[:PORT]]",
		Short: "Seal the cluster's root key with one more HSM",
		Long: `Seal the cluster's root key with the HSM called NAME and add the seal to the
cluster, so that nodes configured with that HSM can start with it. Every
HSM configured on a node when its cluster was created seals the root key
already; add-hsm brings in one configured later, or one removed with rm-hsm.
NAME is the HSM's name in the nodes' configuration (the name of an entry of
the config file's hsm: list; by default hsm:aes256 for a soft HSM key and
pkcs11:TOKEN/KEY for a PKCS#11 token); 'keep stat' shows every node's.

Only a node configured with the HSM can seal with it: the request goes to
the node at --host, or else to a server of MINIO_KMS_SERVER, which must then
be such a node (name a single one there, or use --host).

If the HSM seals the root key already, add-hsm refuses; with --overwrite it
seals the root key with it again and replaces its seal (after the HSM's key
changed, or to repair a seal). Needs SysAdmin privileges; the change is
replicated to every node and audited as CLUSTER:ADDHSM.`,
		Example: `  keep add-hsm token-b --host node1.example.net      node1 is configured with token-b`,
		Args:    argsRange(1, 1),
		PreRunE: func(cmd *cobra.Command, args []string) (err error) {
			if name, err = hsmNameArg(args[0]); err != nil {
				return err
			}
			if cmd.Flags().Changed("host") {
				host, err = hostArg(host)
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "seal the root key again if the HSM seals it already, replacing its seal")
	cmd.Flags().StringVar(&host, "host", "", "send the request to the node at HOST[:PORT], which is configured with the HSM (default: a server of "+EnvServer+")")
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, _ []string) error {
		req := &pb.RemoveClusterNodeRequest{Host: name, DeleteClusterOnHost: overwrite}
		if err := sendHSMCommand(cmd.Context(), c, host, service.ClusterAddHSM, req); err != nil {
			return err
		}
		msg := "HSM %s seals the cluster's root key now\n"
		if overwrite {
			msg = "HSM %s has sealed the cluster's root key anew, replacing any seal it had\n"
		}
		_, err := fmt.Fprintf(cmd.OutOrStdout(), msg, name)
		return err
	})
}

func (a *app) rmHSMCommand() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "rm-hsm NAME",
		Short: "Remove an HSM's seal of the cluster's root key",
		Long: `Remove the seal of the cluster's root key by the HSM called NAME: nodes
configured with that HSM alone can no longer start. The HSM's configuration
on the nodes stays, and add-hsm can seal with it again.

The cluster refuses to remove its last HSM, and one that a node unsealed
with (see 'keep stat'), or may have: every node must answer. Restart such
nodes with another of the cluster's HSMs first. Needs SysAdmin privileges;
the change is replicated to every node and audited as CLUSTER:REMOVEHSM.`,
		Example: `  keep rm-hsm hsm:aes256      after every node has moved to a PKCS#11 token`,
		Args:    argsRange(1, 1),
		PreRunE: func(_ *cobra.Command, args []string) (err error) {
			name, err = hsmNameArg(args[0])
			return err
		},
	}
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, _ []string) error {
		if err := sendHSMCommand(cmd.Context(), c, "", service.ClusterRemoveHSM, &pb.CreateEnclaveRequest{Name: name}); err != nil {
			return err
		}
		_, err := fmt.Fprintf(cmd.OutOrStdout(), "Removed HSM %s: it no longer seals the cluster's root key\n", name)
		return err
	})
}

// hsmNameArg checks an HSM name argument as the server would, as a usage
// error.
func hsmNameArg(name string) (string, error) {
	if err := hsm.ValidName(name); err != nil {
		return "", usageErrorf("%v", err)
	}
	return name, nil
}

// sendHSMCommand sends the one command cmd with msg to host, or through the
// client's load balancer if host is "". Both commands reply with no
// message, so the body is not read.
func sendHSMCommand(ctx context.Context, c *kms.Client, host string, cmd cmds.Command, msg proto.Message) error {
	body, err := cmds.EncodePB(nil, cmd, msg)
	if err != nil {
		return err
	}
	resp, err := c.Send(ctx, &kms.Request{Host: host, Body: body})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// The HSM fields of a node's ServerStatusResponse (spec upstream §11.5,
// internal/api/minkms/hsmstatus.go). The pinned kms-go does not know them:
// they arrive as unknown fields.
const (
	fieldHSMs           protowire.Number = 19   // repeated string: HSMs that seal the root key, in the node's state
	fieldConfiguredHSMs protowire.Number = 20   // repeated string: HSMs the node is configured with
	fieldUnsealedWith   protowire.Number = 7373 // string, Keep's: the HSM the node unsealed with
)

// nodeHSMs are the HSM fields of one node's status; all empty for a
// server that does not send them.
type nodeHSMs struct {
	Sealing      []string // field 19
	Configured   []string // field 20
	UnsealedWith string   // field 7373
}

func (h nodeHSMs) empty() bool {
	return len(h.Sealing) == 0 && len(h.Configured) == 0 && h.UnsealedWith == ""
}

// decodeNodeHSMs reads the HSM fields from the unknown fields of a
// ServerStatusResponse. Other fields, and these with another wire type,
// are skipped: a newer server may send more.
func decodeNodeHSMs(unknown []byte) (nodeHSMs, error) {
	var h nodeHSMs
	for len(unknown) > 0 {
		num, typ, n := protowire.ConsumeTag(unknown)
		if n < 0 {
			return nodeHSMs{}, fmt.Errorf("invalid node status: %w", protowire.ParseError(n))
		}
		unknown = unknown[n:]
		if typ != protowire.BytesType || (num != fieldHSMs && num != fieldConfiguredHSMs && num != fieldUnsealedWith) {
			if n = protowire.ConsumeFieldValue(num, typ, unknown); n < 0 {
				return nodeHSMs{}, fmt.Errorf("invalid node status: field %d: %w", num, protowire.ParseError(n))
			}
			unknown = unknown[n:]
			continue
		}
		s, n := protowire.ConsumeString(unknown)
		if n < 0 {
			return nodeHSMs{}, fmt.Errorf("invalid node status: field %d: %w", num, protowire.ParseError(n))
		}
		unknown = unknown[n:]
		switch num {
		case fieldHSMs:
			h.Sealing = append(h.Sealing, s)
		case fieldConfiguredHSMs:
			h.Configured = append(h.Configured, s)
		default:
			h.UnsealedWith = s
		}
	}
	return h, nil
}

// maxStatusReply bounds the reply of one CLUSTER:STATUS.
const maxStatusReply = 16 << 20

// clusterStatus fetches CLUSTER:STATUS with the HSM fields of each node
// that is up, by node ID. kms.Client.ClusterStatus would drop them, so the
// reply is decoded here.
func clusterStatus(ctx context.Context, c *kms.Client) (*kms.ClusterStatusResponse, map[int]nodeHSMs, error) {
	body, err := cmds.Encode(nil, cmds.ClusterStatus, &kms.ClusterStatusRequest{})
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.Send(ctx, &kms.Request{Body: body})
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusReply+1))
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read cluster status: %w", err)
	}
	if len(data) > maxStatusReply {
		return nil, nil, fmt.Errorf("cannot read cluster status: larger than %d bytes", maxStatusReply)
	}
	var msg pb.ClusterStatusResponse
	rest, err := cmds.DecodePB(data, cmds.ClusterStatus, &msg)
	if err == nil && len(rest) > 0 {
		err = errors.New("more than one status in the reply")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot decode cluster status: %w", err)
	}
	var s kms.ClusterStatusResponse
	if err := s.UnmarshalPB(&msg); err != nil {
		return nil, nil, fmt.Errorf("cannot decode cluster status: %w", err)
	}
	hsms := make(map[int]nodeHSMs, len(msg.NodesUp))
	for id, n := range msg.NodesUp {
		if n == nil {
			continue
		}
		h, err := decodeNodeHSMs(n.ProtoReflect().GetUnknown())
		if err != nil {
			return nil, nil, fmt.Errorf("node %d: %w", id, err)
		}
		if !h.empty() {
			hsms[int(id)] = h
		}
	}
	return &s, hsms, nil
}
