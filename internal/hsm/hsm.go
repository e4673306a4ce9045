// Package hsm defines how Keep reaches its hardware security module and
// provides Soft, a software HSM whose key is given as "hsm:aes256:…", and
// PKCS11, whose keys live on a PKCS#11 token and never leave it.
//
// The HSM key is the only secret an operator has to keep: the root encryption
// key is stored sealed by the HSM, and the root API key and the identity the
// nodes use to authenticate each other are derived from it.
package hsm

import (
	"context"
	"io"

	"aead.dev/mtls"
)

// HSM seals and unseals the cluster's root encryption key and derives private
// keys; it mirrors kms-go's kms.HSM so that other HSMs can be plugged in.
type HSM interface {
	// Name returns the HSM's name in the cluster, such as "hsm:aes256":
	// the name its seal of the root key goes by (see Seal).
	Name() string

	// Seal encrypts plaintext so that only this HSM can Unseal it.
	Seal(ctx context.Context, plaintext []byte) ([]byte, error)

	// Unseal decrypts what Seal returned. A ciphertext this HSM's key did
	// not seal, or one that was changed, is exactly crypto.ErrDecrypt
	// ("invalid ciphertext"), so that a wrong HSM key reads the same
	// everywhere; a failure of the HSM itself (a device gone) is another
	// error.
	Unseal(ctx context.Context, ciphertext []byte) ([]byte, error)

	// PrivateKey returns the Ed25519 key derived from seed; the same HSM key
	// and seed always give the same key, which is what lets every node
	// recompute the root API key and the node identity.
	PrivateKey(ctx context.Context, seed []byte) (mtls.PrivateKey, error)

	io.Closer
}

// Seeds the server passes to PrivateKey; the CLI and the server must agree on
// them, and changing one changes the derived key of every existing cluster.
var (
	// RootAPIKeySeed derives the root SysAdmin API key printed at start-up.
	RootAPIKeySeed = []byte("keep/root-api-key")
	// NodeKeySeed derives the identity nodes use to authenticate each other.
	NodeKeySeed = []byte("keep/cluster-node")
)

// RootAPIKey returns the k1:… root API key of h, shared by the server banner
// and `keep identity hsm:aes256:…` so that both print the same key.
func RootAPIKey(ctx context.Context, h HSM) (mtls.PrivateKey, error) {
	return h.PrivateKey(ctx, RootAPIKeySeed)
}
