package cluster

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/keep-kms/keep/internal/buildinfo"
	"github.com/keep-kms/keep/internal/hsm"
)

// statusTimeout bounds how long CLUSTER:STATUS waits for a node.
const statusTimeout = 2 * time.Second

// NodeStatus is what a node reports about itself.
type NodeStatus struct {
	ID                string            `json:"id"`
	Host              string            `json:"host"`
	Version           string            `json:"version"`
	Uptime            time.Duration     `json:"uptime"`
	Role              string            `json:"role"` // Leader, Follower or Candidate
	LeaderID          string            `json:"leader_id"`
	Commit            uint64            `json:"commit"` // index of the last applied entry
	LastContact       time.Duration     `json:"last_contact"`
	Nodes             map[string]string `json:"nodes"` // ID → host, this node's view
	HeartbeatInterval time.Duration     `json:"heartbeat_interval"`
	ElectionTimeout   time.Duration     `json:"election_timeout"`
	OS                string            `json:"os"`
	Arch              string            `json:"arch"`
	CPUs              int               `json:"cpus"`
	UsableCPUs        int               `json:"usable_cpus"`
	HeapInUse         uint64            `json:"heap_in_use"`
	StackInUse        uint64            `json:"stack_in_use"`
	// HSM is the HSM this node unsealed the root key with, and whose node
	// key it presents; HSMs are those that seal the cluster's root key, as
	// this node's state has them; ConfiguredHSMs those it is configured
	// with.
	HSM            string   `json:"hsm"`
	HSMs           []string `json:"hsms"`
	ConfiguredHSMs []string `json:"configured_hsms"`
}

// LocalStatus reports this node's own status.
func (n *Node) LocalStatus() NodeStatus {
	inst := n.current()
	var mem runtime.MemStats
	runtime.ReadMemStats(&mem)
	st := NodeStatus{
		ID:                string(inst.id),
		Host:              n.cfg.Host,
		Version:           buildinfo.Version,
		Uptime:            time.Since(n.started),
		Role:              inst.raft.State().String(),
		Commit:            inst.raft.AppliedIndex(),
		Nodes:             map[string]string{},
		HeartbeatInterval: heartbeatTimeout / 10,
		ElectionTimeout:   electionTimeout,
		OS:                runtime.GOOS,
		Arch:              runtime.GOARCH,
		CPUs:              runtime.NumCPU(),
		UsableCPUs:        runtime.GOMAXPROCS(0),
		HeapInUse:         mem.HeapInuse,
		StackInUse:        mem.StackInuse,
		HSM:               n.cfg.HSM.Name(),
		HSMs:              hsm.Names(n.cfg.State.Seals()),
		ConfiguredHSMs:    n.cfg.Keyring.Names(),
	}
	if _, id := inst.raft.LeaderWithID(); id != "" {
		st.LeaderID = string(id)
	}
	if inst.raft.State() != raft.Leader {
		if last := inst.raft.LastContact(); !last.IsZero() {
			st.LastContact = time.Since(last)
		}
	}
	if f := inst.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			st.Nodes[string(s.ID)] = string(s.Address)
		}
	}
	return st
}

// ClusterStatus asks every node of the cluster for its status, in
// parallel. Nodes that do not answer in time are reported down, by host.
func (n *Node) ClusterStatus(ctx context.Context) (up map[int]NodeStatus, down map[int]string) {
	self := n.LocalStatus()
	up, down = map[int]NodeStatus{}, map[int]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	// This node's entry goes in before any goroutine writes to up.
	if id, err := strconv.Atoi(self.ID); err == nil {
		up[id] = self
	}
	for idText, host := range self.Nodes {
		id, err := strconv.Atoi(idText)
		if err != nil || idText == self.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			var st NodeStatus
			err := n.cfg.Transport.call(ctx, host, rpcStatus, struct{}{}, &st)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				down[id] = host
			} else {
				up[id] = st
			}
		}()
	}
	wg.Wait()
	return up, down
}
