package state

import (
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/usage"
)

// Privilege is an identity's level of access. The values are those of the
// MinIO KMS API, where they travel as integers.
type Privilege uint32

// The privileges, from most to least powerful.
const (
	SysAdmin Privilege = 1 // everything, in every enclave, and the cluster
	Admin    Privilege = 2 // everything inside its own enclave
	User     Privilege = 3 // what its policy allows inside its own enclave
)

// String returns the privilege's name as the wire spells it.
func (p Privilege) String() string {
	switch p {
	case SysAdmin:
		return "SysAdmin"
	case Admin:
		return "Admin"
	case User:
		return "User"
	default:
		return "invalid"
	}
}

// Enclave is the metadata of a namespace of keys, policies and identities.
type Enclave struct {
	Name      string
	CreatedAt time.Time
	CreatedBy string
}

// KeyVersion is one version of a key.
type KeyVersion struct {
	Name string
	versionInfo
	// Key is the version's material, unsealed. Only the lookups that
	// serve with it set it, State.Key, State.OldestKey and
	// State.KESVersion: lists of versions leave it (and Usage) zero, so
	// that listing a million keys unseals none.
	Key crypto.Key
	// KES reads what KES wrote with this version; nil unless the version
	// was imported from a KES keystore.
	KES *KESKey
	// Usage counts this version's use on this node; set with Key. Every
	// copy of the version shares it; the state makes it on the version's
	// first use.
	Usage *usage.Counter
}

// versionInfo is what a key version is, apart from its name and material:
// the part of KeyVersion that the state keeps for each of up to millions
// of versions (see version). The fields are in the order that packs them
// tightest.
type versionInfo struct {
	Version  uint32
	Imported bool
	// Disabled and DeleteAt are the version's state (see State): a
	// disabled version, or one pending deletion until DeleteAt, serves
	// nothing.
	Disabled  bool
	typ       byte // Type's crypto.KeyType.Code, known while Key is sealed
	CreatedAt time.Time
	CreatedBy string
	DeleteAt  time.Time
}

// Type returns the algorithm of the version's key, which is known without
// its material.
func (v *versionInfo) Type() crypto.KeyType { return crypto.KeyTypeOf(v.typ) }

// Policy is a named set of allow and deny rules. Each rule set maps a command
// text, such as "KEY:GENERATE", to resource patterns: "name", "prefix*" or "*".
type Policy struct {
	Name      string
	Allow     map[string][]string
	Deny      map[string][]string
	CreatedAt time.Time
	CreatedBy string
}

// Identity is a registered client: the h1: hash of its public key, where it
// lives and what it may do. A service account has a Parent and acts with its
// parent's privilege and policy.
type Identity struct {
	ID              string
	Enclave         string
	Privilege       Privilege
	Policy          string
	Parent          string
	ServiceAccounts []string
	Tags            map[string]string
	CreatedAt       time.Time
	CreatedBy       string
}
