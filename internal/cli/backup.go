package cli

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"
)

// backupSuffix ends the name of a backup file.
const backupSuffix = "_kms.db.gzip"

func (a *app) backupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup [FILE]",
		Short: "Save a backup of the cluster's state to a file",
		Long: `Save a backup of the cluster's state (enclaves, keys, policies, identities;
no cluster membership) to FILE, gzip-compressed. The default FILE, or the
name of the file in FILE if it is a directory, is YYYYMMDD_HHMMSS` + backupSuffix + `,
in local time.

Key material stays sealed as at rest: restoring the backup needs the
cluster's HSM key. The file is written completely or not at all.`,
		Args: argsRange(0, 1),
	}
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, args []string) error {
		path := backupName(time.Now())
		if len(args) == 1 {
			path = args[0]
			if fi, err := os.Stat(path); err == nil && fi.IsDir() {
				path = filepath.Join(path, backupName(time.Now()))
			}
		}
		size, err := a.backup(cmd.Context(), c, path)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "Saved backup to %s (%s)\n", path, formatBytes(uint64(size))) // #nosec G115 -- a byte count, never negative
		return err
	})
}

// backupName returns the default name of a backup made at t, in t's time
// zone: YYYYMMDD_HHMMSS_kms.db.gzip.
func backupName(t time.Time) string {
	return t.Format("20060102_150405") + backupSuffix
}

// backup reads a backup from the cluster and writes it, gzip-compressed,
// to path through a temporary file in the same directory, so that path
// is either the complete backup or untouched. It returns the size of the
// file.
func (a *app) backup(ctx context.Context, c *kms.Client, path string) (size int64, err error) {
	resp, err := c.ReadDB(ctx, &kms.ReadDBRequest{})
	if err != nil {
		return 0, err
	}
	defer resp.Close()

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return 0, fmt.Errorf("cannot write backup: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	p := a.newProgress("Receiving backup", -1)
	size, err = writeGzip(tmp, p.reader(resp.Body))
	p.done()
	// An interrupted transfer may also end in what looks like a clean
	// end of the body: a backup is only complete if ctx is not done.
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		return 0, err
	}
	if err = tmp.Sync(); err != nil {
		return 0, fmt.Errorf("cannot write backup: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return 0, fmt.Errorf("cannot write backup: %w", err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("cannot write backup: %w", err)
	}
	return size, nil
}

// writeGzip copies a backup from src to dst gzip-compressed and returns
// the number of bytes written. src may be gzip already (the server sends
// it so, and the HTTP client may or may not have decompressed it); then
// it is copied as it is, and must decompress to its end.
func writeGzip(dst io.Writer, src io.Reader) (int64, error) {
	out := &countWriter{w: dst}
	in := bufio.NewReader(src)
	magic, err := in.Peek(2)
	switch {
	case len(magic) == 0 && errors.Is(err, io.EOF):
		return 0, errors.New("the server sent an empty backup")
	case err != nil && !errors.Is(err, io.EOF):
		return 0, fmt.Errorf("cannot read backup: %w", err)
	}

	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(io.TeeReader(in, out))
		if err == nil {
			_, err = io.Copy(io.Discard, zr) // #nosec G110 -- only checks that the operator's own backup file decompresses; the output is discarded, and the server bounds what it accepts (minkms.MaxBackup)
		}
		if err != nil {
			if out.err != nil {
				return 0, fmt.Errorf("cannot write backup: %w", out.err)
			}
			return 0, fmt.Errorf("cannot read backup: %w", err)
		}
		return out.n, nil
	}

	zw := gzip.NewWriter(out)
	if _, err := io.Copy(zw, in); err != nil {
		if out.err != nil {
			return 0, fmt.Errorf("cannot write backup: %w", out.err)
		}
		return 0, fmt.Errorf("cannot read backup: %w", err)
	}
	if err := zw.Close(); err != nil {
		return 0, fmt.Errorf("cannot write backup: %w", err)
	}
	return out.n, nil
}

// countWriter counts the bytes written to w and keeps its first error.
type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

func (a *app) restoreCommand() *cobra.Command {
	var legacy bool
	cmd := &cobra.Command{
		Use:   "restore [HOST[:PORT]] FILE",
		Short: "Restore a backup into a fresh cluster",
		Long: `Restore the backup in FILE, made by 'keep backup', through the node at
HOST[:PORT] (default port ` + DefaultPort + `; default HOST: the first server in
MINIO_KMS_SERVER).

The cluster must be fresh (no enclaves, keys, policies or identities beside
the defaults) and have the HSM key of the cluster the backup comes from.
A backup is authenticated under that cluster's root key: a changed byte is
refused. Backups made by earlier versions of Keep carry no such MAC and are
refused unless --unauthenticated-legacy is given: then nothing tells the
backup from a forged one, so give it only for a file that you made and
kept safe.`,
		Args: argsRange(1, 2),
		PreRunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 2 {
				_, err := hostArg(args[0])
				return err
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&legacy, "unauthenticated-legacy", false, "accept a backup of an earlier version of Keep, which carries no MAC")
	f := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var host, path string
		if len(args) == 2 {
			host, _ = hostArg(args[0])
			path = args[1]
		} else {
			var err error
			if host, err = hostPort(endpoints(a.getenv(EnvServer))[0]); err != nil {
				return fmt.Errorf("%s: %v", EnvServer, err)
			}
			path = args[0]
		}

		file, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("cannot read backup: %w", err)
		}
		defer file.Close()
		fi, err := file.Stat()
		switch {
		case err != nil:
			return fmt.Errorf("cannot read backup: %w", err)
		case !fi.Mode().IsRegular():
			return fmt.Errorf("cannot read backup: %s is not a file", path)
		case fi.Size() == 0:
			return fmt.Errorf("cannot read backup: %s is empty", path)
		}

		p := a.newProgress("Sending backup", fi.Size())
		body := &progressFile{File: file, p: p}
		if legacy {
			err = a.restoreLegacy(cmd.Context(), f, host, body)
		} else {
			var c *kms.Client
			if c, err = a.client(f); err == nil {
				err = c.WriteDB(cmd.Context(), &kms.WriteDBRequest{Host: host, Body: body})
			}
		}
		p.done()
		if errors.Is(err, kms.ErrDecrypt) {
			return fmt.Errorf("%s: the backup cannot be unsealed: it comes from a cluster with another HSM key, or it is damaged", host)
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "Restored %s to the cluster of %s\n", path, host)
		return err
	}
	return cmd
}

// restoreLegacy sends a backup with ?unauthenticated-legacy, which kms-go
// cannot add to its request.
func (a *app) restoreLegacy(ctx context.Context, f *clientFlags, host string, body io.Reader) error {
	hc, err := a.httpClient(f)
	if err != nil {
		return err
	}
	resp, err := sendNode(ctx, hc, http.MethodPut, host, "/v1/db?unauthenticated-legacy", "application/octet-stream", body)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// progressFile is a file whose reads are shown by a progress. It is an
// fs.File, so that kms-go sends its size as the Content-Length.
type progressFile struct {
	*os.File
	p *progress
}

func (f *progressFile) Read(b []byte) (int, error) {
	n, err := f.File.Read(b)
	f.p.add(n)
	return n, err
}

// progress shows on stderr how many bytes a transfer has moved so far,
// if stderr is a terminal; otherwise it does nothing.
type progress struct {
	w     io.Writer // nil: show nothing
	label string
	total int64 // -1: unknown
	n     int64
	shown time.Time // when the line was last written; zero: never
}

// progressInterval is how often a progress line is rewritten.
const progressInterval = 100 * time.Millisecond

func (a *app) newProgress(label string, total int64) *progress {
	p := &progress{label: label, total: total}
	if isTerminal(a.stderr) {
		p.w = a.stderr
	}
	return p
}

// reader returns r with its reads counted.
func (p *progress) reader(r io.Reader) io.Reader {
	return readerFunc(func(b []byte) (int, error) {
		n, err := r.Read(b)
		p.add(n)
		return n, err
	})
}

// add counts n more bytes and shows them if the line is due.
func (p *progress) add(n int) {
	p.n += int64(n)
	if p.w != nil && time.Since(p.shown) >= progressInterval {
		p.show()
	}
}

func (p *progress) show() {
	line := p.label + ": " + formatBytes(uint64(p.n)) // #nosec G115 -- a byte count, never negative
	if p.total >= 0 {
		line += " of " + formatBytes(uint64(p.total))
	}
	fmt.Fprint(p.w, "\r\x1b[K"+line)
	p.shown = time.Now()
}

// done ends the progress line, if one was shown.
func (p *progress) done() {
	if p.w == nil || p.shown.IsZero() {
		return
	}
	p.show()
	fmt.Fprintln(p.w)
}

// readerFunc is a function as an io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }
