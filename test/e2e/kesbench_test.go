package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/kesfixture"
	"github.com/keep-kms/keep/test/testnode"
)

// BenchmarkKESDecrypt compares the server CPU time keep spends decrypting
// a ciphertext KES made (of a key imported from KES) with decrypting a
// Keep ciphertext of the same plaintext size and associated data, on the
// same node in the same run, over the MinIO KMS API. The goal of issue 10
// is at most 1.1 times.
//
//	go test ./test/e2e -run '^$' -bench KESDecrypt -benchtime 1x
//
// It takes the KES ciphertexts from the fixture set (KEEP_KES_FIXTURES):
// the raw vectors of 32-byte data keys under an AES256 key, the encoding
// and algorithm KES has written since 2024 and MinIO's common case. Rounds
// and chunks as BenchmarkServerCPU (KEEP_BENCH_*): keep and KES cases take
// turns, and the ratio is the median of the rounds' ratios.
func BenchmarkKESDecrypt(b *testing.B) {
	seconds, rounds, workers, chunks := benchSettings(b)
	tick := clockTick()
	ctx := context.Background()
	dir := testnode.KESFixtureDir(b)
	key, vectors := kesBenchVectors(b, dir)

	n := testnode.Start(b, testnode.Options{})
	kc := n.RootClient(b)
	const enclave = "bench-kes"
	noErr(b, kc.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: enclave}), "CreateEnclave")
	for _, f := range kesfixture.KeyFiles(b, dir) {
		if f.Name == key {
			kesfixture.Import(b, testnode.HTTPClient(b, n.Root, time.Minute), n.Endpoint(), enclave, []kesfixture.KeyFile{f}, false)
		}
	}

	kesCase := &benchCase{name: "decrypt KES raw", short: "kes", enclave: enclave, batch: 1}
	keepCase := &benchCase{name: "decrypt Keep", short: "keep", enclave: enclave, batch: 1}
	const keepKey = "keep-key"
	noErr(b, kc.CreateKey(ctx, enclave, &kms.CreateKeyRequest{Name: keepKey, Type: kms.AES256}), "CreateKey")
	for _, v := range vectors {
		kesCase.dec = append(kesCase.dec, &kms.DecryptRequest{Name: key, Ciphertext: v.ciphertext, AssociatedData: v.context})
		g, err := kc.GenerateKey(ctx, enclave, &kms.GenerateKeyRequest{Name: keepKey, AssociatedData: v.context, Length: 32})
		if err != nil || len(g) != 1 {
			b.Fatalf("GenerateKey: %d replies, %v", len(g), err)
		}
		keepCase.dec = append(keepCase.dec, &kms.DecryptRequest{Name: keepKey, Ciphertext: g[0].Ciphertext, AssociatedData: v.context})
	}
	cases := []*benchCase{keepCase, kesCase}
	for _, cs := range cases {
		if _, err := runLoad(ctx, kc, cs, workers, 1000); err != nil {
			b.Fatalf("warm-up %s: %s", cs.name, testnode.DescribeErr(err))
		}
	}
	start := time.Now()
	if _, err := runLoad(ctx, kc, keepCase, workers, 1000); err != nil {
		b.Fatal(err)
	}
	ops := max(int(1000/time.Since(start).Seconds()*seconds), 2000) / chunks * chunks

	b.ResetTimer()
	perCall := make([][]float64, len(cases)) // µs of server CPU per call, per round
	var ratios []string
	var ratioValues []float64
	for r := range rounds {
		ticks := make([]int64, len(cases))
		for c := range chunks {
			for k := range cases {
				k := (k + c + r) % len(cases) // alternate who goes first
				before, err := procCPU(n.PID())
				if err != nil {
					b.Fatal(err)
				}
				if _, err := runLoad(ctx, kc, cases[k], workers, ops/chunks); err != nil {
					b.Fatalf("%s: %s", cases[k].name, testnode.DescribeErr(err))
				}
				after, err := procCPU(n.PID())
				if err != nil {
					b.Fatal(err)
				}
				ticks[k] += after - before
			}
		}
		for k := range cases {
			perCall[k] = append(perCall[k], float64(ticks[k])/tick/float64(ops)*1e6)
		}
		ratio := perCall[1][r] / perCall[0][r]
		ratioValues = append(ratioValues, ratio)
		ratios = append(ratios, fmt.Sprintf("%.3f", ratio))
		fmt.Fprintf(os.Stderr, "bench: round %d %d calls each | keep %.1f µs/call | kes %.1f µs/call | ratio %.3f\n", r+1, ops, perCall[0][r], perCall[1][r], ratio)
	}
	b.StopTimer()
	ratio := median(ratioValues)
	verdict := "met"
	if ratio > 1.1 {
		verdict = "MISSED"
	}
	b.Logf("server CPU per decrypt, median of %d rounds: Keep ciphertext %.1f µs, KES raw ciphertext %.1f µs; ratio %.3f (goal ≤ 1.10, %s); rounds %s",
		rounds, median(perCall[0]), median(perCall[1]), ratio, verdict, strings.Join(ratios, " "))
	b.ReportMetric(median(perCall[0]), "keep-us/call")
	b.ReportMetric(median(perCall[1]), "kes-us/call")
	b.ReportMetric(ratio, "kes/keep")
}

// kesBenchVector is a KES ciphertext and its associated data.
type kesBenchVector struct{ ciphertext, context []byte }

// kesBenchVectors picks the AES256 key of the fixture set with the most raw
// vectors of 32-byte plaintexts, and those vectors.
func kesBenchVectors(b *testing.B, dir string) (string, []kesBenchVector) {
	byKey := map[string][]kesBenchVector{}
	best := ""
	for _, v := range kesfixture.LoadVectors(b, dir).Vectors {
		if v.Encoding != "raw" || v.KeyAlgorithm != "AES256" || len(v.Plaintext) != 32 {
			continue
		}
		byKey[v.Key] = append(byKey[v.Key], kesBenchVector{v.Ciphertext, v.Context})
		if len(byKey[v.Key]) > len(byKey[best]) {
			best = v.Key
		}
	}
	if best == "" {
		b.Skip("the fixture set has no raw vector of a 32-byte plaintext under an AES256 key")
	}
	return best, byKey[best]
}
