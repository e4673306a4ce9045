package cli

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kes"
)

// writeCertificate writes a self-signed certificate for a new Ed25519 key
// as PEM, preceded by a private key block, to a file and returns its name
// and the SHA-256 of its public key.
func writeCertificate(t *testing.T) (string, [32]byte) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "client"},
		NotBefore:    time.Now(),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	data := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	name := filepath.Join(t.TempDir(), "client.crt")
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return name, sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

func TestIdentityCommand(t *testing.T) {
	certFile, certHash := writeCertificate(t)
	certID := "h1:" + base64.RawURLEncoding.EncodeToString(certHash[:])

	tests := []struct {
		in   string
		want identityInfoJSON
	}{
		{ // spec 1.3 test vectors
			in: "k1:AqwjUvaWEE9O83quGOkiO_2D1x37Za9gE4L5UHdq0Ag",
			want: identityInfoJSON{
				APIKey:      "k1:AqwjUvaWEE9O83quGOkiO_2D1x37Za9gE4L5UHdq0Ag",
				KESAPIKey:   "kes:v1:AAKsI1L2lhBPTvN6rhjpIjv9g9cd+2WvYBOC+VB3atAI",
				Identity:    "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0",
				KESIdentity: "1402ef2a82f9b01da67ef5eb6e1799f2d80a8c8259eb480df951fd4dc7caed0d",
			},
		},
		{
			in: "k1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",
			want: identityInfoJSON{
				APIKey:      "k1:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",
				KESAPIKey:   "kes:v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
				Identity:    "h1:ZG1r5J2fAEj5T2d0nso1FW7tT3p74Y5PxKlL_UTjALA",
				KESIdentity: "646d6be49d9f0048f94f67749eca35156eed4f7a7be18e4fc4a94bfd44e300b0",
			},
		},
		{
			in: "k2:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",
			want: identityInfoJSON{
				APIKey:      "k2:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA",
				Identity:    "h1:8dWUSbcnFl3nMr8oMzgSK5liimFZGP7cZ9h4__z0fac",
				KESIdentity: "f1d59449b727165de732bf283338122b99628a615918fedc67d878fffcf47da7",
			},
		},
		{ // kms-go/kes test vector: the same key in KES spelling
			in: "kes:v1:ACQpoGqx3rHHjT938Hfu5hVVQJHZWSqVI2Xp1KlYxFVw",
			want: identityInfoJSON{
				APIKey:      "k1:JCmgarHesceNP3fwd-7mFVVAkdlZKpUjZenUqVjEVXA",
				KESAPIKey:   "kes:v1:ACQpoGqx3rHHjT938Hfu5hVVQJHZWSqVI2Xp1KlYxFVw",
				Identity:    "h1:BCb6mgS8J1a5L76Kl-Gh4HtT7PBO0z2iLDPlyfrrjLs",
				KESIdentity: "0426fa9a04bc2756b92fbe8a97e1a1e07b53ecf04ed33da22c33e5c9faeb8cbb",
			},
		},
		{ // an identity in either spelling
			in:   "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0",
			want: identityInfoJSON{Identity: "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0", KESIdentity: "1402ef2a82f9b01da67ef5eb6e1799f2d80a8c8259eb480df951fd4dc7caed0d"},
		},
		{
			in:   "1402ef2a82f9b01da67ef5eb6e1799f2d80a8c8259eb480df951fd4dc7caed0d",
			want: identityInfoJSON{Identity: "h1:FALvKoL5sB2mfvXrbheZ8tgKjIJZ60gN-VH9TcfK7Q0", KESIdentity: "1402ef2a82f9b01da67ef5eb6e1799f2d80a8c8259eb480df951fd4dc7caed0d"},
		},
		{
			in:   certFile,
			want: identityInfoJSON{Identity: certID, KESIdentity: hex.EncodeToString(certHash[:])},
		},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, nil, "", "identity", tt.in, "--json")
			if code != ExitOK {
				t.Fatalf("exit code %d: %s", code, stderr)
			}
			if got := decodeJSON[identityInfoJSON](t, stdout); got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}

			text, _, _ := runCLI(t, nil, "", "identity", tt.in)
			if !strings.Contains(text, "Identity      "+tt.want.Identity+"\n") {
				t.Errorf("text output lacks the identity:\n%s", text)
			}
		})
	}
}

func TestIdentityCommandKESAgrees(t *testing.T) {
	// The KES library computes the same identity from the KES spelling.
	info, err := identityInfo(context.Background(), "k1:AqwjUvaWEE9O83quGOkiO_2D1x37Za9gE4L5UHdq0Ag")
	if err != nil {
		t.Fatal(err)
	}
	key, err := kes.ParseAPIKey(info.KESAPIKey)
	if err != nil {
		t.Fatal(err)
	}
	if key.Identity().String() != info.KESIdentity {
		t.Errorf("kes says %s, keep says %s", key.Identity(), info.KESIdentity)
	}
}

func TestIdentityCommandHSMKey(t *testing.T) {
	hsmKey, _, code := runCLI(t, nil, "", "--soft-hsm")
	if code != ExitOK {
		t.Fatal("--soft-hsm failed")
	}
	hsmKey = strings.TrimSpace(hsmKey)
	out1, stderr, code := runCLI(t, nil, "", "identity", hsmKey, "--json")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	out2, _, _ := runCLI(t, nil, "", "identity", hsmKey, "--json")
	if out1 != out2 {
		t.Errorf("the root API key of one HSM key differs between runs:\n%s\n%s", out1, out2)
	}
	info := decodeJSON[identityInfoJSON](t, out1)
	key, err := mtls.ParsePrivateKey(info.APIKey)
	if err != nil {
		t.Fatalf("root API key %q: %v", info.APIKey, err)
	}
	if key.Identity().String() != info.Identity {
		t.Errorf("identity %s does not belong to the root API key %s", info.Identity, info.APIKey)
	}

	_, stderr, code = runCLI(t, nil, "", "identity", "hsm:aes256:c2VjcmV0")
	if code != ExitError || strings.Contains(stderr, "c2VjcmV0") {
		t.Errorf("bad HSM key: exit code %d, stderr %q (must not repeat the key)", code, stderr)
	}
}

func TestParseTags(t *testing.T) {
	tags, err := parseTags([]string{"a=1", "b=", "c=x=y"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tags) != 3 || tags["a"] != "1" || tags["b"] != "" || tags["c"] != "x=y" {
		t.Errorf("got %v", tags)
	}
	for _, bad := range []string{"a", "=1"} {
		if _, err := parseTags([]string{bad}); err == nil {
			t.Errorf("parseTags(%q) succeeded", bad)
		}
	}
	if tags, err := parseTags(nil); tags != nil || err != nil {
		t.Errorf("no tags gave %v, %v", tags, err)
	}
}
