package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"
)

const (
	// maxProfiles bounds the TAR of profiles a node may send.
	maxProfiles = 1 << 30

	// stopProfilingTimeout bounds fetching the profiles once profiling
	// is to stop.
	stopProfilingTimeout = time.Minute
)

func (a *app) pprofCommand() *cobra.Command {
	var (
		req      kms.ProfileRequest
		duration time.Duration
		file     string
	)
	cmd := &cobra.Command{
		Use:   "pprof HOST[:PORT]",
		Short: "Profile a node and save the profiles",
		Long: `Profile the node at HOST[:PORT] (default port ` + DefaultPort + `) for --duration or until
Ctrl-C, then save its Go pprof profiles, one file per profile, in a TAR
archive. Without profile flags, CPU and heap are profiled. Read a profile
with 'go tool pprof'. Needs SysAdmin privileges.`,
		Example: `  keep pprof node1.example.net --duration 1m -o node1.tar
  keep pprof node1.example.net --goroutine --block 1000 --mutex 10`,
		Args: argsRange(1, 1),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if req.Host, err = hostArg(args[0]); err != nil {
				return err
			}
			switch {
			case duration <= 0:
				return usageErrorf("--duration must be positive")
			case req.BlockRate < 0 || req.MutexFraction < 0:
				return usageErrorf("--block and --mutex must not be negative")
			}
			if !req.CPU && !req.Heap && !req.Goroutine && !req.Thread && req.BlockRate == 0 && req.MutexFraction == 0 {
				req.CPU, req.Heap = true, true
			}
			if file == "" {
				file = "keep-pprof-" + time.Now().Format("20060102_150405") + ".tar"
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&req.CPU, "cpu", false, "profile CPU usage")
	fl.BoolVar(&req.Heap, "heap", false, "profile heap memory")
	fl.BoolVar(&req.Goroutine, "goroutine", false, "save the stacks of all goroutines")
	fl.BoolVar(&req.Thread, "thread", false, "profile the creation of OS threads")
	fl.IntVar(&req.BlockRate, "block", 0, "profile blocking: sample one event per `N` nanoseconds blocked")
	fl.IntVar(&req.MutexFraction, "mutex", 0, "profile mutex contention: report 1 in `N` events")
	fl.DurationVar(&duration, "duration", 30*time.Second, "how long to profile")
	fl.StringVarP(&file, "output", "o", "", "the TAR `FILE` to write (default keep-pprof-YYYYMMDD_HHMMSS.tar)")
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, _ []string) error {
		ctx := cmd.Context()
		if err := c.StartProfiling(ctx, &req); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "Profiling %s for %v; Ctrl-C stops early\n", req.Host, duration)
		t := time.NewTimer(duration)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()

		// Ctrl-C ends the wait, not the command: the profiles are what
		// the user waited for.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopProfilingTimeout)
		defer cancel()
		resp, err := c.StopProfiling(ctx, &req)
		if err != nil {
			return err
		}
		defer resp.Close()
		data, err := io.ReadAll(io.LimitReader(resp, maxProfiles))
		if err != nil {
			return &kms.HostError{Host: req.Host, Err: fmt.Errorf("cannot read profiles: %w", err)}
		}
		names, err := tarNames(data)
		if err != nil {
			return fmt.Errorf("%s sent an invalid TAR of profiles: %w", req.Host, err)
		}
		if err := writeFileAtomic(file, data); err != nil {
			return fmt.Errorf("cannot save profiles: %w", err)
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "Saved %s to %s\n", strings.Join(names, ", "), file)
		return err
	})
}

// tarNames returns the names of the files in a TAR archive.
func tarNames(data []byte) ([]string, error) {
	var names []string
	r := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names = append(names, h.Name)
	}
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so that path is either complete or untouched.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
