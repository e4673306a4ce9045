// Package cluster runs Keep's raft cluster (hashicorp/raft): the stores in
// kms.db, the TLS transport on the API port, bootstrapping a node as a
// one-node cluster, and Apply, the only path by which state changes.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/keep-kms/keep/internal/hsm"
	"github.com/keep-kms/keep/internal/state"
)

// DBFile is the name of the raft log and stable store in the data directory.
const DBFile = "kms.db"

// sealedRootKeyName is the stable-store key of a copy of the HSM-sealed root
// key. It lets a node check its HSM key before raft touches anything.
var sealedRootKeyName = []byte("keep/sealed-root-key")

// Errors of the write path.
var (
	ErrNoLeader         = errors.New("cluster has no leader: writes are unavailable")
	ErrNotPartOfCluster = errors.New("server not part of cluster")
	ErrWrongHSM         = errors.New("failed to unseal root encryption key with HSM")
)

// Config configures a node.
type Config struct {
	Dir       string  // data directory; "" keeps everything in memory (dev mode)
	Host      string  // advertised host:port, the node's address in the cluster
	HSM       hsm.HSM // seals the root key
	State     *state.State
	Transport *Transport
	Logger    *slog.Logger
}

// Node is a member of a raft cluster.
type Node struct {
	raft    *raft.Raft
	state   *state.State
	host    string
	id      raft.ServerID
	closers []io.Closer
	log     *slog.Logger
}

// Open starts the raft node of cfg. A data directory without raft state is
// bootstrapped as a one-node cluster. Open returns once the node has applied
// its log, so its state is current.
func Open(ctx context.Context, cfg Config) (*Node, error) {
	logs, stable, snaps, closers, err := openStores(ctx, cfg)
	if err != nil {
		return nil, err
	}
	n := &Node{state: cfg.State, host: cfg.Host, closers: closers, log: cfg.Logger}
	fail := func(err error) (*Node, error) {
		n.Close()
		return nil, err
	}

	existing, err := raft.HasExistingState(logs, stable, snaps)
	if err != nil {
		return fail(fmt.Errorf("failed to read raft state: %w", err))
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  cfg.Transport,
		MaxPool: 3,
		Timeout: 5 * time.Second,
		Logger:  raftLogger(),
	})
	n.closers = append(n.closers, trans)

	conf := raftConfig()
	if existing {
		id, err := memberID(conf, cfg, logs, stable, snaps, trans)
		if err != nil {
			return fail(err)
		}
		conf.LocalID = id
	} else {
		if err := bootstrap(ctx, conf, cfg, logs, stable, snaps, trans); err != nil {
			return fail(err)
		}
	}
	n.id = conf.LocalID

	r, err := raft.NewRaft(conf, &fsm{state: cfg.State}, logs, stable, snaps, trans)
	if err != nil {
		return fail(fmt.Errorf("failed to start raft: %w", err))
	}
	n.raft = r
	if err := n.catchUp(ctx, stable); err != nil {
		return fail(err)
	}
	return n, nil
}

// openStores opens kms.db (or memory stores in dev mode) after checking that
// the HSM unseals the root key stored there. The check opens the file
// read-only, so that a start with the wrong HSM key changes nothing on disk.
func openStores(ctx context.Context, cfg Config) (raft.LogStore, raft.StableStore, raft.SnapshotStore, []io.Closer, error) {
	if cfg.Dir == "" {
		mem := raft.NewInmemStore()
		return mem, mem, raft.NewInmemSnapshotStore(), nil, nil
	}
	path := filepath.Join(cfg.Dir, DBFile)
	if _, err := os.Stat(path); err == nil {
		if err := checkHSM(ctx, path, cfg.HSM); err != nil {
			return nil, nil, nil, nil, err
		}
	}
	db, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return nil, nil, nil, nil, openError(path, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, raftLogger())
	if err != nil {
		db.Close()
		return nil, nil, nil, nil, fmt.Errorf("failed to open snapshot store in %s: %w", cfg.Dir, err)
	}
	return db, db, snaps, []io.Closer{db}, nil
}

func openError(path string, err error) error {
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("failed to open %s: it is in use by another keep server", path)
	}
	return fmt.Errorf("failed to open %s: %w", path, err)
}

func checkHSM(ctx context.Context, path string, h hsm.HSM) error {
	db, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: time.Second},
	})
	if err != nil {
		return openError(path, err)
	}
	defer db.Close()
	sealed, err := db.Get(sealedRootKeyName)
	if err != nil || len(sealed) == 0 {
		return nil // bootstrapping was interrupted before the key was stored
	}
	plain, err := h.Unseal(ctx, sealed)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWrongHSM, err)
	}
	clear(plain)
	return nil
}

// raftConfig tunes raft for a LAN: a lost leader is noticed within a second.
func raftConfig() *raft.Config {
	conf := raft.DefaultConfig()
	conf.HeartbeatTimeout = 500 * time.Millisecond
	conf.ElectionTimeout = 500 * time.Millisecond
	conf.LeaderLeaseTimeout = 250 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.Logger = raftLogger()
	return conf
}

func raftLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
}

// bootstrap makes a fresh node a one-node cluster: node 0 at its host. The
// root key is created and stored sealed before the cluster exists, so that
// the init entry can carry it once this node leads.
func bootstrap(ctx context.Context, conf *raft.Config, cfg Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) error {
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		return fmt.Errorf("failed to generate root encryption key: %w", err)
	}
	sealed, err := cfg.HSM.Seal(ctx, root)
	clear(root)
	if err != nil {
		return fmt.Errorf("failed to seal root encryption key with HSM: %w", err)
	}
	if err := stable.Set(sealedRootKeyName, sealed); err != nil {
		return fmt.Errorf("failed to store root encryption key: %w", err)
	}
	conf.LocalID = "0"
	return raft.BootstrapCluster(conf, logs, stable, snaps, trans, raft.Configuration{
		Servers: []raft.Server{{Suffrage: raft.Voter, ID: conf.LocalID, Address: raft.ServerAddress(cfg.Host)}},
	})
}

// memberID finds this node in the cluster configuration by its --host.
func memberID(conf *raft.Config, cfg Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, trans raft.Transport) (raft.ServerID, error) {
	c, err := raft.GetConfiguration(conf, &fsm{state: state.New(cfg.HSM)}, logs, stable, snaps, trans)
	if err != nil {
		return "", fmt.Errorf("failed to read cluster configuration: %w", err)
	}
	var hosts []string
	for _, s := range c.Servers {
		if string(s.Address) == cfg.Host {
			return s.ID, nil
		}
		hosts = append(hosts, string(s.Address))
	}
	return "", fmt.Errorf("%w: this node was started with --host %s, but the cluster knows it as one of %s; start it with the --host it was added with, or delete %s to start it as a fresh node",
		ErrNotPartOfCluster, cfg.Host, strings.Join(hosts, ", "), filepath.Join(cfg.Dir, DBFile))
}

// catchUp waits until this node has applied the log. A node that leads a
// cluster that has not been initialized yet (a fresh one) proposes the init
// entry.
func (n *Node) catchUp(ctx context.Context, stable raft.StableStore) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if n.raft.State() == raft.Leader {
			if err := n.raft.Barrier(10 * time.Second).Error(); err != nil {
				return fmt.Errorf("failed to apply raft log: %w", err)
			}
			if n.state.Initialized() {
				return nil
			}
			sealed, err := stable.Get(sealedRootKeyName)
			if err != nil || len(sealed) == 0 {
				return fmt.Errorf("cluster is not initialized and this node holds no root key")
			}
			return n.Apply(ctx, &state.Entry{
				Op:   state.OpInit,
				Time: time.Now().UTC(),
				Init: &state.InitArgs{ClusterID: uuid.NewString(), SealedRootKey: sealed},
			})
		}
		if n.state.Initialized() && n.raft.Leader() != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for the cluster: no leader elected (are a majority of nodes up?)")
		case <-tick.C:
		}
	}
}

// Apply proposes a write and returns its outcome once a majority has
// committed it and this node has applied it.
func (n *Node) Apply(ctx context.Context, e *state.Entry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("failed to encode log entry: %w", err)
	}
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrEnqueueTimeout) {
			return fmt.Errorf("%w: %w", ErrNoLeader, err)
		}
		return fmt.Errorf("failed to replicate write: %w", err)
	}
	if err, ok := f.Response().(error); ok {
		return err
	}
	return nil
}

// Status is a node's view of the cluster.
type Status struct {
	ID          string
	Host        string
	Role        string // Leader, Follower or Candidate
	LeaderID    string // "" when there is no leader
	Commit      uint64 // index of the last applied entry
	LastContact time.Duration
	Nodes       map[string]string // ID → host
}

// Status reports this node's raft status.
func (n *Node) Status() (Status, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return Status{}, err
	}
	st := Status{
		ID:     string(n.id),
		Host:   n.host,
		Role:   n.raft.State().String(),
		Commit: n.raft.AppliedIndex(),
		Nodes:  map[string]string{},
	}
	if _, id := n.raft.LeaderWithID(); id != "" {
		st.LeaderID = string(id)
	}
	if st.Role != raft.Leader.String() {
		st.LastContact = time.Since(n.raft.LastContact())
	}
	for _, s := range f.Configuration().Servers {
		st.Nodes[string(s.ID)] = string(s.Address)
	}
	return st, nil
}

// Writable reports whether this node can take writes now.
func (n *Node) Writable() bool {
	return n.raft.State() == raft.Leader
}

// Close stops raft and closes the stores.
func (n *Node) Close() error {
	var errs []error
	if n.raft != nil {
		errs = append(errs, n.raft.Shutdown().Error())
	}
	for _, c := range n.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
