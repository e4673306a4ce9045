// Package crypto holds Keep's key types, one version of a symmetric key
// ([Key]), the self-describing ciphertext format and data key generation.
//
// A ciphertext made by [Key.Encrypt] carries everything needed to pick the
// right key for it again, so that data encrypted before a key rotation still
// decrypts:
//
//	format     1 byte   always 1; lets the format change without guessing
//	key type   1 byte   1 = AES256, 2 = ChaCha20
//	version    4 bytes  key version, big-endian
//	iv        16 bytes  random; selects the per-message AEAD key
//	nonce     12 bytes  random AEAD nonce
//	payload      ...    AEAD ciphertext followed by its 16-byte tag
//
// The AEAD key of a message is HMAC-SHA256(key material, iv). Because every
// message gets its own AEAD key, the random 96-bit nonces never have to be
// unique across all messages of a key version, which would otherwise cap how
// many data keys one version may encrypt. AES256 keys use AES-256-GCM and
// ChaCha20 keys use ChaCha20-Poly1305. The AEAD's associated data is the
// 6-byte header followed by the caller's associated data, so changing the
// recorded type or version makes decryption fail.
package crypto
