package crypto

import "testing"

func BenchmarkEncrypt(b *testing.B) {
	plaintext := make([]byte, 32)
	ad := []byte("enclave/key/1")
	for _, typ := range keyTypes {
		k := testKey(b, typ, 0x01)
		b.Run(string(typ), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(plaintext)))
			for b.Loop() {
				if _, err := k.Encrypt(1, plaintext, ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	plaintext := make([]byte, 32)
	ad := []byte("enclave/key/1")
	for _, typ := range keyTypes {
		k := testKey(b, typ, 0x01)
		ciphertext, err := k.Encrypt(1, plaintext, ad)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(typ), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(plaintext)))
			for b.Loop() {
				if _, err := k.Decrypt(ciphertext, ad); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
