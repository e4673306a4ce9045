package minkms

import (
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"testing"

	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/state"
)

func TestStatusOf(t *testing.T) {
	full := &cluster.StorageError{Host: "10.0.0.1:7373", Err: fmt.Errorf("write /data/wal/x: %w", syscall.ENOSPC)}
	failed := &cluster.StorageError{Host: "10.0.0.2:7373", Err: syscall.EIO}
	tests := []struct {
		err    error
		status int
		msg    string
	}{
		{state.ErrKeyNotFound, http.StatusNotFound, state.ErrKeyNotFound.Error()},
		{cluster.ErrNoLeader, http.StatusServiceUnavailable, cluster.ErrNoLeader.Error()},
		// A node that cannot write its raft log: 503, what and which node.
		{full, http.StatusServiceUnavailable, full.Error()},
		{fmt.Errorf("create key: %w", full), http.StatusServiceUnavailable, "create key: " + full.Error()},
		{failed, http.StatusServiceUnavailable, failed.Error()},
		{errors.New("disk on fire"), http.StatusInternalServerError, errInternal.Error()},
		// Key material that does not unseal is the server's failure, not
		// an invalid ciphertext of the client's: 500, details in the log.
		{fmt.Errorf("%w: version 1 of key %q", state.ErrUnseal, "k"), http.StatusInternalServerError, errInternal.Error()},
	}
	for _, tt := range tests {
		status, msg := statusOf(tt.err)
		if status != tt.status || msg != tt.msg {
			t.Errorf("statusOf(%v) = %d %q, want %d %q", tt.err, status, msg, tt.status, tt.msg)
		}
	}
}
