package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/softhsm"
	"github.com/keep-kms/keep/test/testnode"
)

// BenchmarkStartHSM measures what a PKCS#11 token costs a node's start:
// the time from exec to the ready line of a node restarted on its data
// directory, on a SoftHSM2 token against a soft HSM key, in interleaved
// rounds (KEEP_BENCH_ROUNDS, default 5) so that both see the same machine.
// The figure is the ratio of the medians, PKCS#11 / soft. The token is
// used at start only: the request path is the same for both.
func BenchmarkStartHSM(b *testing.B) {
	_, rounds, _, _ := benchSettings(b)
	tok := softhsm.NewToken(b, "bench")
	pinEnv := append(tok.Env(), "KEEP_PKCS11_PIN="+tok.PIN)
	if _, stderr, code := runCLI(b, pinEnv, "--pkcs11", "--module", tok.Module, "--token", tok.Label, "--key", "root"); code != 0 {
		b.Fatalf("keep --pkcs11: exit %d\n%s", code, stderr)
	}
	soft := testnode.Start(b, testnode.Options{Name: "soft"})
	token := testnode.New(b, testnode.Options{Name: "pkcs11", HSMKey: "-", ExtraEnv: append(pinEnv,
		"KEEP_PKCS11_MODULE="+tok.Module, "KEEP_PKCS11_TOKEN="+tok.Label, "KEEP_PKCS11_KEY=root")})
	token.MustStart()
	// Some state, so that a start replays a log.
	for _, n := range []*testnode.Node{soft, token} {
		c := n.RootClient(b)
		for i := range 50 {
			noErr(b, c.CreateKey(ctxT(b), "", &kms.CreateKeyRequest{Name: "k" + string(rune('a'+i%26)) + string(rune('a'+i/26))}), "CreateKey")
		}
		n.NoAPIKey = true
	}
	took := map[string][]time.Duration{}
	for b.Loop() {
		for range rounds {
			for _, n := range []*testnode.Node{soft, token} {
				n.Stop()
				start := time.Now()
				n.MustStart()
				took[n.Name] = append(took[n.Name], time.Since(start))
			}
		}
	}
	med := func(d []time.Duration) time.Duration {
		d = slices.Clone(d)
		slices.Sort(d)
		return d[len(d)/2]
	}
	s, p := med(took["soft"]), med(took["pkcs11"])
	b.ReportMetric(float64(s.Milliseconds()), "ms-soft")
	b.ReportMetric(float64(p.Milliseconds()), "ms-pkcs11")
	b.ReportMetric(float64(p)/float64(s), "pkcs11/soft")
	b.Logf("start to ready, median of %d starts each: soft %v, PKCS#11 %v (ratio %.3f)", len(took["soft"]), s, p, float64(p)/float64(s))
}
