package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// restartTimeout bounds a coordinated restart of the whole cluster.
const restartTimeout = 15 * time.Second

// ErrRestartUnsupported is returned where the process cannot restart itself.
var ErrRestartUnsupported = errors.New("this node cannot restart itself: it runs in --dev mode (its state lives in memory) or on a platform without exec")

// Restart restarts this node's process. With all, it first restarts every
// other node, concurrently, and waits (at most 15 seconds) until they are
// back; if one does not come back, this node stays up and says which.
func (n *Node) Restart(ctx context.Context, all bool) error {
	if n.cfg.Restart == nil {
		return ErrRestartUnsupported
	}
	if all {
		ctx, cancel := context.WithTimeout(ctx, restartTimeout)
		defer cancel()
		self := n.LocalStatus()
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for id, host := range self.Nodes {
			if id == self.ID {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.restartPeer(ctx, host); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("node %s (%s) did not restart: %w", id, host, err))
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 {
			return fmt.Errorf("%w: %w", ErrNodeUnavailable, errors.Join(errs...))
		}
	}
	n.cfg.Restart()
	return nil
}

// restartPeer asks the node at host to restart and waits until it answers
// again with an uptime that shows it has. A node that is itself starting
// (and answers 503) is asked again.
func (n *Node) restartPeer(ctx context.Context, host string) error {
	sent := time.Now()
	for {
		err := n.cfg.Transport.call(ctx, host, rpcRestart, struct{}{}, nil)
		if err == nil {
			break
		}
		if !notReady(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("did not come back within %v", restartTimeout)
		case <-time.After(200 * time.Millisecond):
		}
		var st NodeStatus
		if err := n.cfg.Transport.call(ctx, host, rpcStatus, struct{}{}, &st); err == nil && st.Uptime < time.Since(sent) {
			return nil
		}
	}
}
