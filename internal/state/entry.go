package state

import (
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/usage"
)

// Op names the kind of a write.
type Op string

// The writes the state machine knows. Their names are stored in the raft log:
// never rename one.
const (
	OpInit           Op = "init"
	OpCreateEnclave  Op = "enclave.create"
	OpDeleteEnclave  Op = "enclave.delete"
	OpCreateKey      Op = "key.create"
	OpDeleteKey      Op = "key.delete"
	OpCreatePolicy   Op = "policy.create"
	OpDeletePolicy   Op = "policy.delete"
	OpAssignPolicy   Op = "policy.assign"
	OpCreateIdentity Op = "identity.create"
	OpDeleteIdentity Op = "identity.delete"
	OpRestore        Op = "restore"
	OpSetSettings    Op = "settings.set"
	// The lifecycle of keys: scheduled deletion is OpDeleteKey with a time.
	OpCancelDeleteKey Op = "key.cancel_delete"
	OpKeyState        Op = "key.state"
	OpDestroyKey      Op = "key.destroy"
	OpKeyRotation     Op = "key.rotation"
	OpUsageReport     Op = "usage.report" // a node's usage of key versions (Entry.Usage)
)

// Entry is one write, as it travels through the raft log. Everything that
// varies between nodes (time, random key material) is decided by the node
// that proposes the entry, so that applying it is deterministic. Key material
// is sealed under the root key before it is put into an entry.
type Entry struct {
	Op      Op        `json:"op"`
	Time    time.Time `json:"time"`
	By      string    `json:"by,omitempty"`      // the identity that asked for the write
	Enclave string    `json:"enclave,omitempty"` // the enclave acted in
	Name    string    `json:"name,omitempty"`    // the enclave, key, policy or identity acted on

	Init      *InitArgs       `json:"init,omitempty"`
	Key       *KeyArgs        `json:"key,omitempty"`
	DeleteKey *DeleteKeyArgs  `json:"delete_key,omitempty"`
	KeyState  *KeyStateArgs   `json:"key_state,omitempty"`
	Destroy   *DestroyKeyArgs `json:"destroy,omitempty"`
	Rotation  *RotationArgs   `json:"rotation,omitempty"`
	Policy    *PolicyArgs     `json:"policy,omitempty"`
	Assign    string          `json:"assign,omitempty"` // the policy assigned to identity Name
	Identity  *IdentityArgs   `json:"identity,omitempty"`
	Restore   []byte          `json:"restore,omitempty"` // a backup, key material sealed
	// RestoreLegacy lets Restore be a format 1 backup, which carries no MAC:
	// the operator asked for it explicitly.
	RestoreLegacy bool              `json:"restore_legacy,omitempty"`
	Settings      map[string]string `json:"settings,omitempty"` // cluster-wide settings to change; "" removes one
	Usage         *usage.Report     `json:"usage,omitempty"`    // what a node reports of its use of key versions
	HSM           *HSMArgs          `json:"hsm,omitempty"`      // the cluster's HSMs
}

// InitArgs start a cluster: its ID and its root key, sealed by each of the
// first node's HSMs (hsm.EncodeSeals; a single HSM ciphertext in clusters
// created before there could be several).
type InitArgs struct {
	ClusterID     string `json:"cluster_id"`
	SealedRootKey []byte `json:"sealed_root_key"`
}

// KeyArgs create a key, or add a version to it. Version is the version
// the material was sealed for (State.NextVersion); entries of earlier
// versions of Keep have none, and their material is sealed for the key's
// name only.
type KeyArgs struct {
	Type       crypto.KeyType `json:"type"`
	Version    uint32         `json:"version,omitempty"`
	AddVersion bool           `json:"add_version,omitempty"`
	Imported   bool           `json:"imported,omitempty"`
	Sealed     []byte         `json:"sealed"` // the material, sealed by SealKey
	// KES is set when the key is imported from a KES keystore.
	KES *KESArgs `json:"kes,omitempty"`
	// RotateEvery is a new key's rotation period (0: none).
	RotateEvery time.Duration `json:"rotate_every,omitempty"`
}

// DeleteKeyArgs delete one version of a key (0: the latest) or all of
// them: at once, or with At (a key.delete entry) when At has come. A
// key.cancel_delete entry names the versions the same way.
type DeleteKeyArgs struct {
	Version uint32    `json:"version,omitempty"`
	All     bool      `json:"all,omitempty"`
	At      time.Time `json:"at,omitzero"`
}

// PolicyArgs are the rules of a policy.
type PolicyArgs struct {
	Allow map[string][]string `json:"allow,omitempty"`
	Deny  map[string][]string `json:"deny,omitempty"`
}

// IdentityArgs create an identity. A service account's parent is the
// identity that created it (Entry.By).
type IdentityArgs struct {
	Privilege      Privilege         `json:"privilege"`
	ServiceAccount bool              `json:"service_account,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
}
