package kesformat

import (
	"bytes"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
)

// BenchmarkDecrypt compares decrypting a KES ciphertext with decrypting a
// Keep ciphertext (internal/crypto) of the same plaintext under the same key
// material and context; issue 10 asks that KES cost at most 1.1x Keep. The
// sizes are a data key (32 bytes) and a 1 KiB plaintext.
func BenchmarkDecrypt(b *testing.B) {
	for _, bc := range decryptBenchCases(b) {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(bc.size))
			for b.Loop() {
				if _, err := bc.decrypt(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// decryptBenchCase is one decryption of BenchmarkDecrypt.
type decryptBenchCase struct {
	name, baseline string // baseline: the name of the Keep case of the same size
	size           int
	decrypt        func() ([]byte, error)
}

// decryptBenchCases returns, per algorithm and size, the Keep decryption and
// the KES decryption in each encoding of the same plaintext.
func decryptBenchCases(b testing.TB) []decryptBenchCase {
	var cases []decryptBenchCase
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
			cases = append(cases, decryptBenchCase{name + "/keep", name + "/keep", size, func() ([]byte, error) { return keep.Decrypt(keepCT, context) }})
			for _, enc := range []Encoding{EncodingRaw, EncodingMsgpack, EncodingJSON} {
				ct := kesCT.encode(b, enc, "")
				cases = append(cases, decryptBenchCase{name + "/kes-" + string(enc), name + "/keep", size, func() ([]byte, error) { return kes.Decrypt(ct, context) }})
			}
		}
	}
	return cases
}

// TestDecryptCostRatio reports, when KEEP_KES_BENCH_RATIO is set, the cost
// of each KES decryption relative to Keep's of the same size (issue 10 asks
// for at most 1.1x). The cases run interleaved and the fastest of several
// rounds counts, so that load from other processes on the machine skews the
// ratio less than separate benchmark runs would.
func TestDecryptCostRatio(t *testing.T) {
	if os.Getenv("KEEP_KES_BENCH_RATIO") == "" {
		t.Skip("set KEEP_KES_BENCH_RATIO=1 to measure")
	}
	cases := decryptBenchCases(t)
	best := make(map[string]time.Duration)
	for range 5 {
		for _, bc := range cases {
			r := testing.Benchmark(func(b *testing.B) {
				for b.Loop() {
					if _, err := bc.decrypt(); err != nil {
						b.Fatal(err)
					}
				}
			})
			d := time.Duration(r.NsPerOp())
			if old, ok := best[bc.name]; !ok || d < old {
				best[bc.name] = d
			}
		}
	}
	for _, bc := range cases {
		if bc.name != bc.baseline {
			t.Logf("%-28s %6d ns/op  %.2fx %s", bc.name, best[bc.name].Nanoseconds(), float64(best[bc.name])/float64(best[bc.baseline]), bc.baseline)
		}
	}
}
