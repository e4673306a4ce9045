package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/kesformat"
	"github.com/keep-kms/keep/internal/state"
)

// KESImportStatus says what importing one KES key did, or would do.
type KESImportStatus string

// The outcomes of ImportKES that are no error.
const (
	// KESImported: the key was created now.
	KESImported KESImportStatus = "imported"
	// KESExists: Keep already holds this KES key, same material and HMAC
	// key; nothing changed. A re-run of an import ends here.
	KESExists KESImportStatus = "exists"
	// KESNew: a dry run found that the key would be imported.
	KESNew KESImportStatus = "new"
)

// KESImport is the outcome of importing one KES key file: what the file
// holds (never its material) and what was done with it.
type KESImport struct {
	Name      string
	Status    KESImportStatus
	Format    kesformat.Format
	Algorithm crypto.KeyType
	HMAC      bool // the key has an HMAC key (protobuf key files)
}

// ImportKES imports the key name of a KES keystore from its key file, as
// KES wrote it, or with dryRun only says what an import would do. The key
// becomes version 1 of a new Keep key, sealed like any other, that also
// decrypts the ciphertexts KES made with it and computes KES's HMACs. It
// is one log entry: a key is imported whole or not at all. A key that
// exists with other material, or that was not imported from KES, is never
// overwritten (ErrKeyExists).
func (s *Service) ImportKES(ctx context.Context, c Caller, enclave, name string, file []byte, dryRun bool) (KESImport, error) {
	enclave = enclaveName(enclave)
	if err := s.admit(c, enclave, cmds.KeyImport, name); err != nil {
		return KESImport{}, err
	}
	if err := state.ValidKeyName(name); err != nil {
		return KESImport{}, err
	}
	k, err := kesformat.ParseKeyFile(name, file)
	if err != nil {
		return KESImport{}, fmt.Errorf("%w: %w", state.ErrInvalidArgument, err)
	}
	defer func() { clear(k.Material); clear(k.HMACKey) }()

	res := KESImport{Name: name, Format: k.Format, Algorithm: k.Algorithm, HMAC: k.HMACKey != nil}
	if res.Status, err = s.kesStatus(enclave, k); err != nil || res.Status == KESExists || dryRun {
		return res, err
	}
	material, err := crypto.NewKey(k.Algorithm, k.Material)
	if err != nil {
		return KESImport{}, fmt.Errorf("%w: key %q: %w", state.ErrInvalidArgument, name, err)
	}
	args := &state.KeyArgs{
		Type:     k.Algorithm,
		Imported: true,
		KES: &state.KESArgs{
			Format:    string(k.Format),
			Implicit:  k.AlgorithmImplicit,
			CreatedAt: kesCreatedAt(k.CreatedAt),
			CreatedBy: kesCreator(k.CreatedBy),
		},
	}
	err = s.createKey(ctx, c, enclave, name, material, args, func(a *state.KeyArgs) (err error) {
		if k.HMACKey != nil {
			a.KES.SealedHMAC, err = s.state.SealKESHMAC(enclave, name, a.Version, a.Type, k.HMACKey)
		}
		return err
	})
	if errors.Is(err, state.ErrKeyExists) {
		// Another import of the same keystore got there first: that is
		// this key again, or a conflict to report as such.
		if status, e := s.kesStatus(enclave, k); e != nil || status == KESExists {
			res.Status = status
			return res, e
		}
	}
	if err != nil {
		return KESImport{}, err
	}
	res.Status = KESImported
	return res, nil
}

// kesStatus says whether k is new to Keep, already imported, or in
// conflict with a key of the same name (ErrKeyExists).
func (s *Service) kesStatus(enclave string, k *kesformat.Key) (KESImportStatus, error) {
	if _, err := s.state.Key(enclave, k.Name, 0); errors.Is(err, state.ErrKeyNotFound) {
		return KESNew, nil
	} else if err != nil {
		return "", err
	}
	if v, ok := s.state.KESVersion(enclave, k.Name); ok && v.MatchesKES(k.Algorithm, k.Material, k.HMACKey) {
		return KESExists, nil
	}
	return "", fmt.Errorf("%w: key %q holds other material than the KES key file; it is not overwritten", state.ErrKeyExists, k.Name)
}

// kesCreatedAt is the creation time of a KES key as Keep stores it: UTC,
// and zero (the import's time) for one that JSON cannot carry, which only
// a damaged or made-up file has.
func kesCreatedAt(t time.Time) time.Time {
	if y := t.Year(); y < 1 || y > 9999 {
		return time.Time{}
	}
	return t.UTC()
}

// kesCreator is the creator of a KES key in Keep's spelling (h1:), or ""
// (the importer) when the file names none or no identity.
func kesCreator(hex string) string {
	if h1, ok := identity.FromHex(hex); ok {
		return h1
	}
	return ""
}
