package kesstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/keep-kms/keep/internal/kesformat"
)

// FS is a KES fs keystore: a directory with one regular file per key, the
// file name being the key name and the content the key file (the formats
// are internal/kesformat's). KES writes nothing else there.
//
// Symbolic links are not followed. KES never creates one, so a link in a
// keystore is something an operator put there; following it could read a
// file from anywhere. FS lists a link whose name is a key name as a key,
// and Read refuses it with ErrNotRegular, so the import reports it instead
// of leaving it out silently: the operator copies the file it points to
// into the keystore, or imports that directory with --fs.
type FS struct {
	dir string // absolute
}

// OpenFS opens the directory dir as an fs keystore; a relative dir is
// relative to the working directory, as in KES. Unlike KES, which creates a
// missing keystore directory (empty), OpenFS fails: importing from a
// directory that does not exist is a mistake in the path.
func OpenFS(dir string) (*FS, error) {
	a := abs(dir)
	fi, err := os.Stat(a)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("fs keystore %s does not exist (relative paths are relative to the working directory, as in KES)", a)
	case err != nil:
		return nil, fmt.Errorf("fs keystore: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("fs keystore %s is not a directory", a)
	}
	return &FS{dir: a}, nil
}

// String returns "fs keystore DIR".
func (s *FS) String() string { return "fs keystore " + s.dir }

// List returns the entries of the directory, sorted by name, without
// descending into subdirectories. Entries that are neither regular files
// nor symbolic links, and names KES rejects, are listed with Skip set.
func (s *FS) List(ctx context.Context) ([]Entry, error) {
	d, err := os.Open(s.dir)
	if err != nil {
		return nil, fmt.Errorf("cannot list %s: %w", s, err)
	}
	defer d.Close()
	var entries []Entry
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch, err := d.ReadDir(1024)
		for _, de := range batch {
			entries = append(entries, Entry{Name: de.Name(), Skip: skipReason(de.Name(), de.Type())})
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("cannot list %s: %w", s, err)
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, nil
}

// skipReason says why the directory entry name of type t is not a key
// KES could have served, "" if it may be one.
func skipReason(name string, t fs.FileMode) string {
	switch {
	case !kesformat.ValidName(name):
		return "name not accepted by KES as a key name"
	case t.IsDir():
		return "directory"
	case t.IsRegular(), t&fs.ModeSymlink != 0:
		return ""
	default:
		return "not a regular file (" + fileType(t) + ")"
	}
}

// fileType names the kind of file of mode t.
func fileType(t fs.FileMode) string {
	switch {
	case t&fs.ModeNamedPipe != 0:
		return "named pipe"
	case t&fs.ModeSocket != 0:
		return "socket"
	case t&fs.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}

// Read returns the content of the key file name. It is ErrNotRegular for
// anything but a regular file (a symbolic link is not followed),
// ErrTooLarge for a file larger than kesformat.MaxKeyFileSize, and an I/O
// error for a file that cannot be read.
func (s *FS) Read(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !kesformat.ValidName(name) {
		return nil, fmt.Errorf("%q is not a KES key name", name)
	}
	path := filepath.Join(s.dir, name)
	before, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() {
		if before.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%w: symbolic link, not followed", ErrNotRegular)
		}
		return nil, fmt.Errorf("%w: %s", ErrNotRegular, fileType(before.Mode().Type()))
	}
	f, err := os.Open(path) // #nosec G304 -- a key name (no / \ .) inside the keystore directory
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// The file was checked before it was opened: make sure that what was
	// opened is that file, not a link put in its place in between.
	after, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(before, after) {
		return nil, fmt.Errorf("%w: the file was replaced while being read", ErrNotRegular)
	}
	if after.Size() > kesformat.MaxKeyFileSize {
		return nil, fmt.Errorf("%w: %d bytes, KES reads at most %d", ErrTooLarge, after.Size(), kesformat.MaxKeyFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, kesformat.MaxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > kesformat.MaxKeyFileSize {
		return nil, fmt.Errorf("%w: more than %d bytes, KES reads at most %d", ErrTooLarge, kesformat.MaxKeyFileSize, kesformat.MaxKeyFileSize)
	}
	return data, nil
}

// abs returns path made absolute against the working directory, for
// messages that must say which directory was meant.
func abs(path string) string {
	if a, err := filepath.Abs(path); err == nil {
		return a
	}
	return path
}
