// Package kesstore reads the keystore of a KES server, for taking over from
// KES (issue 10): the keystore section of a KES server config file and the
// key files it points to. It reads only; it never writes to a keystore.
//
// A Keystore lists key names and returns the bytes KES stored for one key,
// exactly as KES stored them: parsing them is internal/kesformat's job, and
// the server's, which imports them. Only the fs keystore is implemented,
// because it is the only one that can be run and tested here; the others
// KES supports (Vault, the cloud secret managers, …) are recognised in a
// config file and refused with ErrUnsupported. Adding one means a type that
// implements KeystoreConfig and Keystore and a case in parseKeystore.
package kesstore

import (
	"context"
	"errors"
	"fmt"
	"path"
)

// Keystore is a KES keystore, opened for reading.
type Keystore interface {
	// List returns every entry of the keystore, sorted by name. Entries that
	// KES could never have served as a key have Skip set.
	List(ctx context.Context) ([]Entry, error)
	// Read returns the stored bytes of the key name, at most
	// kesformat.MaxKeyFileSize of them; a larger value is ErrTooLarge.
	Read(ctx context.Context, name string) ([]byte, error)
	// String describes the keystore for messages, e.g. "fs keystore /var/kes".
	String() string
}

// Entry is one entry of a keystore listing.
type Entry struct {
	// Name is the entry's name: the key name, for a key.
	Name string
	// Skip is empty for a key. Otherwise it says why the entry is not a key
	// KES could have served (a directory, a name KES rejects, …), and the
	// entry is reported but not imported.
	Skip string
}

var (
	// ErrUnsupported is wrapped by the error of a config file whose keystore
	// is one that keep import-kes cannot read (yet).
	ErrUnsupported = errors.New("not supported by keep import-kes yet")
	// ErrTooLarge is wrapped by the error of Read for a key file larger than
	// KES reads: KES never wrote one, and cannot have served it.
	ErrTooLarge = errors.New("key file too large")
	// ErrNotRegular is wrapped by the error of Read for a key that is not a
	// regular file (a symbolic link, which is not followed).
	ErrNotRegular = errors.New("not a regular file")
)

// Filter returns the entries whose names match the glob pattern (path.Match
// syntax, as KES list patterns: "minio-*", "app-?", "*"); "" matches every
// entry. A malformed pattern is an error.
func Filter(entries []Entry, pattern string) ([]Entry, error) {
	if pattern == "" {
		return entries, nil
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, fmt.Errorf("invalid key pattern %q: %w", pattern, err)
	}
	var out []Entry
	for _, e := range entries {
		if ok, _ := path.Match(pattern, e.Name); ok {
			out = append(out, e)
		}
	}
	return out, nil
}
