// Package kesformat reads what a KES server wrote, so that Keep can take over
// a KES deployment without re-encrypting anything: the key files of KES's
// `fs` keystore (every format from KES v0.19.1 to commit 63649d0), the
// ciphertexts KES returned (JSON, msgpack and raw encodings, AES256 and
// ChaCha20 keys) and KES's HMACs.
//
// It is a pure library: it reads bytes given to it and touches neither the
// file system nor Keep's state. The rules it follows are those of KES
// 63649d0 (internal/crypto ParseKeyVersion, parseCiphertext and
// SecretKey.Decrypt), because every file and ciphertext that KES version
// accepts must keep working after the migration, and nothing it refuses
// should become readable by accident. The fixture README
// (../shared/fixtures/kes-migration/README.md) documents every format.
package kesformat
