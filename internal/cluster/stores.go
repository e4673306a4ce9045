package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/keep-kms/keep/internal/hsm"
)

// DBFile is the name of the raft log and stable store in the data directory.
const DBFile = "kms.db"

// snapshotDir is where raft keeps snapshots, inside the data directory.
const snapshotDir = "snapshots"

// logCacheSize is how many recent raft entries are kept in memory.
const logCacheSize = 1024

// sealedRootKeyName is the stable-store key of a copy of the HSM-sealed root
// key. It lets a node check its HSM key before raft touches anything.
var sealedRootKeyName = []byte("keep/sealed-root-key")

// stores are raft's log, stable and snapshot stores.
type stores struct {
	logs    raft.LogStore
	stable  raft.StableStore
	snaps   raft.SnapshotStore
	closers []io.Closer
}

func (s *stores) close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// openStores opens kms.db (or memory stores in dev mode) after checking that
// the HSM unseals the root key stored there. The check opens the file
// read-only, so that a start with the wrong HSM key changes nothing on disk.
func openStores(ctx context.Context, dir string, h hsm.HSM) (*stores, error) {
	if dir == "" {
		mem := raft.NewInmemStore()
		return &stores{logs: mem, stable: mem, snaps: raft.NewInmemSnapshotStore()}, nil
	}
	path := filepath.Join(dir, DBFile)
	if _, err := os.Stat(path); err == nil {
		if err := checkHSM(ctx, path, h); err != nil {
			return nil, err
		}
	}
	db, err := raftboltdb.New(raftboltdb.Options{
		Path:        path,
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return nil, openError(path, err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, raftLogger())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("failed to open snapshot store in %s: %w", dir, err)
	}
	// The cache serves the entries the leader replicates right after
	// writing them, instead of reading them back from bolt.
	logs, err := raft.NewLogCache(logCacheSize, db)
	if err != nil {
		db.Close()
		return nil, err
	}
	return &stores{logs: logs, stable: db, snaps: snaps, closers: []io.Closer{db}}, nil
}

// wipeStores deletes the raft state of a data directory.
func wipeStores(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.Remove(filepath.Join(dir, DBFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("failed to delete %s: %w", DBFile, err)
	}
	if err := os.RemoveAll(filepath.Join(dir, snapshotDir)); err != nil {
		return fmt.Errorf("failed to delete snapshots: %w", err)
	}
	return nil
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

func raftLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Error, Output: os.Stderr})
}
