package service

import (
	"context"
	"strconv"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/cluster"
)

// AddNode adds a fresh node to the cluster.
func (s *Service) AddNode(ctx context.Context, c Caller, host string) error {
	if err := s.authorize(c, "", cmds.ClusterAddNode, host); err != nil {
		return err
	}
	return s.cluster.AddNode(ctx, host)
}

// RemoveNode removes a node from the cluster; with deleteCluster the node
// starts over as a fresh one-node cluster.
func (s *Service) RemoveNode(ctx context.Context, c Caller, host string, deleteCluster bool) error {
	if err := s.authorize(c, "", cmds.ClusterRemoveNode, host); err != nil {
		return err
	}
	return s.cluster.RemoveNode(ctx, host, deleteCluster)
}

// EditCluster drops nodes from this node's view of the cluster.
func (s *Service) EditCluster(ctx context.Context, c Caller, remove []uint32) error {
	if err := s.authorize(c, "", cmds.ClusterEdit, ""); err != nil {
		return err
	}
	ids := make([]string, 0, len(remove))
	for _, id := range remove {
		ids = append(ids, strconv.FormatUint(uint64(id), 10))
	}
	return s.cluster.Edit(ctx, ids)
}

// ClusterStatus returns the status of every node that answers, and the
// hosts of those that do not.
func (s *Service) ClusterStatus(ctx context.Context, c Caller) (map[int]cluster.NodeStatus, map[int]string, error) {
	if err := s.authorize(c, "", cmds.ClusterStatus, ""); err != nil {
		return nil, nil, err
	}
	up, down := s.cluster.ClusterStatus(ctx)
	return up, down, nil
}

// Restart restarts this node, or with all every node of the cluster.
func (s *Service) Restart(ctx context.Context, c Caller, all bool) error {
	if err := s.AuthorizeSysAdmin(c); err != nil {
		return err
	}
	return s.cluster.Restart(ctx, all)
}
