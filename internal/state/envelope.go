package state

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"

	"github.com/keep-kms/keep/internal/crypto"
)

// A snapshot or backup of format 2 is an envelope around the JSON of the
// state:
//
//	magic (8) | format (1) = 2 | length of the sealed root key (2, BE) |
//	sealed root key | HMAC-SHA256 (32) | JSON
//
// The MAC covers every byte but its own, under a key derived from the root
// key in the envelope (infoSnapshotMAC or infoBackupMAC, told apart by the
// magic too), which only the HSM unseals: nobody without the HSM key can
// write an envelope that verifies, and a changed byte anywhere is refused.
// A state that was never initialized has no root key: its envelope has an
// empty sealed root key, a zero MAC and a JSON that must hold nothing.
type envelopeKind struct {
	magic string
	what  string // in errors
}

var (
	snapshotEnvelope = envelopeKind{magic: "KEEPSNAP", what: "snapshot"}
	backupEnvelope   = envelopeKind{magic: "KEEPBKUP", what: "backup"}
)

// envelopeFormat is the format byte of the envelope; the JSON inside
// carries the same number (snapshotFormat).
const envelopeFormat = 2

// legacySnapshotFormat is the format of snapshots and backups written by
// earlier versions of Keep: the JSON alone, unauthenticated.
const legacySnapshotFormat = 1

// ErrLegacyBackup refuses a backup of the format of earlier versions of
// Keep, which carry no MAC: it cannot be told from a forged one.
var ErrLegacyBackup = fmt.Errorf("%w: the backup is in the format of an earlier version of Keep, which carries no MAC, so it cannot be told from a forged one; if you made it yourself and kept it safe, restore it with 'keep restore --unauthenticated-legacy' (PUT /v1/db?unauthenticated-legacy)", ErrInvalidArgument)

// envelope is an envelope split into its parts.
type envelope struct {
	sealedRootKey []byte
	mac           []byte
	signed        []byte // the bytes before the MAC
	body          []byte // the JSON after it
}

// parseEnvelope splits data into the parts of an envelope of kind; it
// verifies nothing. ok is false if data is no envelope of kind (and might
// be a legacy snapshot).
func parseEnvelope(data []byte, kind envelopeKind) (env envelope, ok bool, err error) {
	if !bytes.HasPrefix(data, []byte(kind.magic)) {
		return envelope{}, false, nil
	}
	rest := data[len(kind.magic):]
	if len(rest) < 3 {
		return envelope{}, true, fmt.Errorf("%s: %w: truncated header", kind.what, ErrNotAuthentic)
	}
	if rest[0] != envelopeFormat {
		return envelope{}, true, fmt.Errorf("%s: unsupported format %d", kind.what, rest[0])
	}
	n := int(binary.BigEndian.Uint16(rest[1:3]))
	rest = rest[3:]
	if len(rest) < n+macSize {
		return envelope{}, true, fmt.Errorf("%s: %w: truncated header", kind.what, ErrNotAuthentic)
	}
	signedLen := len(data) - len(rest) + n
	return envelope{
		sealedRootKey: rest[:n],
		mac:           rest[n : n+macSize],
		signed:        data[:signedLen],
		body:          rest[n+macSize:],
	}, true, nil
}

// writeEnvelope writes the JSON that body writes in an envelope of kind,
// authenticated under macKey; sealed and macKey are empty for a state that
// was never initialized. The MAC comes before the JSON, and the JSON of a
// large state is not held in memory: body is called twice, for the MAC and
// for w, and must write the same bytes both times.
func writeEnvelope(w io.Writer, kind envelopeKind, sealed, macKey []byte, body func(*bodyWriter)) error {
	if len(sealed) > 0xffff {
		return fmt.Errorf("failed to write %s: sealed root key of %d bytes", kind.what, len(sealed))
	}
	header := make([]byte, 0, len(kind.magic)+3+len(sealed))
	header = append(header, kind.magic...)
	header = append(header, envelopeFormat)
	header = binary.BigEndian.AppendUint16(header, uint16(len(sealed))) // #nosec G115 -- checked above: at most 0xffff
	header = append(header, sealed...)
	mac := make([]byte, macSize)
	if len(sealed) > 0 {
		h := hmac.New(sha256.New, macKey)
		h.Write(header)
		if err := writeBody(h, body); err != nil {
			return fmt.Errorf("failed to write %s: %w", kind.what, err)
		}
		mac = h.Sum(nil)
	}
	for _, b := range [][]byte{header, mac} {
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("failed to write %s: %w", kind.what, err)
		}
	}
	if err := writeBody(w, body); err != nil {
		return fmt.Errorf("failed to write %s: %w", kind.what, err)
	}
	return nil
}

// bodyWriter writes the JSON of a snapshot in pieces, and keeps the first
// error, after which it writes nothing.
type bodyWriter struct {
	w   *bufio.Writer
	err error
}

func writeBody(w io.Writer, body func(*bodyWriter)) error {
	b := &bodyWriter{w: bufio.NewWriterSize(w, 64<<10)}
	body(b)
	if b.err != nil {
		return b.err
	}
	return b.w.Flush()
}

func (b *bodyWriter) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *bodyWriter) write(p []byte) {
	if b.err == nil {
		_, b.err = b.w.Write(p)
	}
}

// json writes the JSON of v.
func (b *bodyWriter) json(v any) {
	if b.err != nil {
		return
	}
	p, err := json.Marshal(v)
	if err != nil {
		b.fail(err)
		return
	}
	b.write(p)
}

// splice returns the JSON object p up to the value of its field, which is
// null, and from after that value on, for the caller to write the value in
// between. The field must come before any nested object in p, whose keys
// could be named alike; no string of p can hold the quote that starts the
// mark, since JSON escapes a quote inside a string.
func (b *bodyWriter) splice(p []byte, field string) (before, after []byte) {
	mark := []byte(`"` + field + `":`)
	i := bytes.Index(p, append(mark, "null"...))
	if i < 0 {
		b.fail(fmt.Errorf("no field %s to fill in the JSON of the snapshot", field))
		return nil, nil
	}
	return p[:i+len(mark)], p[i+len(mark)+len("null"):]
}

// errChanged refuses an envelope of kind whose MAC does not match.
func errChanged(kind envelopeKind) error {
	return fmt.Errorf("%s: %w: its MAC does not match: it was changed after it was written", kind.what, ErrNotAuthentic)
}

func envelopeMAC(key, signed, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(signed)
	h.Write(body)
	return h.Sum(nil)
}

// macKey returns the MAC key of kind.
func (m macKeys) of(kind envelopeKind) []byte {
	if kind == backupEnvelope {
		return m.backup
	}
	return m.snapshot
}

// AuthenticatedSnapshot reports whether r starts a raft snapshot in the
// authenticated envelope; it verifies nothing.
func AuthenticatedSnapshot(r io.Reader) bool {
	magic := make([]byte, len(snapshotEnvelope.magic))
	_, err := io.ReadFull(r, magic)
	return err == nil && string(magic) == snapshotEnvelope.magic
}

// opened is a snapshot or backup that has been verified and decoded, its
// root key unsealed; nothing of it has been applied yet.
type opened struct {
	snap   snapshot
	root   crypto.Key
	macs   macKeys
	legacy bool // format 1: key material sealed under legacyKeyAAD
	// verify makes build unseal every key version once, and refuse the
	// whole if one does not unseal: set for backups, which come from
	// operators, and are restored rarely; a raft snapshot is the node's
	// own or its leader's, and its keys are unsealed on first use.
	verify bool
}

// openSnapshot verifies and decodes a snapshot or backup of kind. With
// legacy, format 1 (no MAC) is accepted too; otherwise it is refused.
func openSnapshot(u Unsealer, data []byte, kind envelopeKind, legacy bool) (*opened, error) {
	env, ok, err := parseEnvelope(data, kind)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return openLegacySnapshot(u, data, kind, legacy)
	}
	o := &opened{}
	if len(env.sealedRootKey) > 0 {
		if o.root, o.macs, err = unsealRoot(u, env.sealedRootKey); err != nil {
			return nil, fmt.Errorf("%s: %w", kind.what, err)
		}
		if !hmac.Equal(envelopeMAC(o.macs.of(kind), env.signed, env.body), env.mac) {
			return nil, errChanged(kind)
		}
	}
	if err := decodeSnapshot(env.body, &o.snap); err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", kind.what, err)
	}
	switch {
	case o.snap.Format != envelopeFormat:
		return nil, fmt.Errorf("%s: unsupported format %d inside an envelope of format %d", kind.what, o.snap.Format, envelopeFormat)
	case len(env.sealedRootKey) == 0 && !o.snap.empty():
		return nil, fmt.Errorf("%s: %w: it holds state but no root key", kind.what, ErrNotAuthentic)
	case !bytes.Equal(o.snap.SealedRootKey, env.sealedRootKey):
		return nil, fmt.Errorf("%s: %w: its root key differs from its envelope's", kind.what, ErrNotAuthentic)
	}
	return o, nil
}

func openLegacySnapshot(u Unsealer, data []byte, kind envelopeKind, legacy bool) (*opened, error) {
	if !legacy {
		if kind == backupEnvelope {
			return nil, ErrLegacyBackup
		}
		return nil, fmt.Errorf("%s: %w: it is in the unauthenticated format of an earlier version of Keep, which this data directory no longer accepts", kind.what, ErrNotAuthentic)
	}
	o := &opened{legacy: true}
	if err := decodeSnapshot(data, &o.snap); err != nil {
		return nil, fmt.Errorf("failed to read %s: %w", kind.what, err)
	}
	if o.snap.Format != legacySnapshotFormat {
		return nil, fmt.Errorf("unsupported %s format %d", kind.what, o.snap.Format)
	}
	if o.snap.ClusterID != "" {
		var err error
		if o.root, o.macs, err = unsealRoot(u, o.snap.SealedRootKey); err != nil {
			return nil, fmt.Errorf("%s: %w", kind.what, err)
		}
	}
	return o, nil
}

// empty reports whether a snapshot is that of a state never initialized.
func (s *snapshot) empty() bool {
	return s.ClusterID == "" && len(s.SealedRootKey) == 0 && len(s.Enclaves) == 0 && len(s.Identities) == 0 && len(s.Settings) == 0
}
