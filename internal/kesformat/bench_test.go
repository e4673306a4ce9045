package kesformat

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/keep-kms/keep/internal/crypto"
)

// BenchmarkDecrypt compares decrypting a KES ciphertext with decrypting a
// Keep ciphertext (internal/crypto) of the same plaintext under the same key
// material and context; issue 10 asks that KES cost at most 1.1x Keep. The
// sizes are a data key (32 bytes) and a 1 KiB plaintext.
func BenchmarkDecrypt(b *testing.B) {
	material := bytes.Repeat([]byte{0x42}, KeySize)
	context := []byte("minio-bucket/some/object/name.bin")
	for _, alg := range []crypto.KeyType{crypto.AES256, crypto.ChaCha20} {
		keep, err := crypto.NewKey(alg, material)
		if err != nil {
			b.Fatal(err)
		}
		kes, err := NewCipher(alg, material)
		if err != nil {
			b.Fatal(err)
		}
		for _, size := range []int{32, 1024} {
			plaintext := bytes.Repeat([]byte{'p'}, size)
			keepCT, err := keep.Encrypt(1, plaintext, context)
			if err != nil {
				b.Fatal(err)
			}
			kesCT := encryptKES(b, alg, material, plaintext, context)
			name := string(alg) + "/" + strconv.Itoa(size)
			b.Run(name+"/keep", func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					if _, err := keep.Decrypt(keepCT, context); err != nil {
						b.Fatal(err)
					}
				}
			})
			for _, enc := range []Encoding{EncodingRaw, EncodingMsgpack, EncodingJSON} {
				ct := kesCT.encode(b, enc, "")
				b.Run(name+"/kes-"+string(enc), func(b *testing.B) {
					b.ReportAllocs()
					b.SetBytes(int64(size))
					for b.Loop() {
						if _, err := kes.Decrypt(ct, context); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
