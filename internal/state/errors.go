package state

import (
	"errors"
	"fmt"
)

// Domain errors. Their texts are part of the MinIO KMS wire contract (spec
// §4.2), so the API layers may send err.Error() of the sentinel itself; wrap
// them with fmt.Errorf("…: %w") for context and match them with errors.Is.
var (
	ErrEnclaveExists      = errors.New("enclave already exists")
	ErrEnclaveNotFound    = errors.New("enclave does not exist")
	ErrKeyExists          = errors.New("key already exists")
	ErrKeyNotFound        = errors.New("key does not exist")
	ErrPolicyNotFound     = errors.New("policy does not exist")
	ErrIdentityNotFound   = errors.New("identity does not exist")
	ErrIdentityExists     = errors.New("identity already exists")
	ErrInvalidArgument    = errors.New("invalid argument")
	ErrNotInitialized     = errors.New("state is not initialized")
	ErrAlreadyInitialized = errors.New("state is already initialized")
	// ErrVersionConflict refuses a new key version sealed for a version
	// number that another write took first; the proposer seals it again.
	ErrVersionConflict = fmt.Errorf("%w: another version of the key was added at the same time", ErrKeyExists)
)
