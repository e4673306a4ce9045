package server

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/keep-kms/keep/internal/hsm"
)

func TestBannerAPIKey(t *testing.T) {
	h, err := hsm.ParseSoftKey(mustSoftKey(t))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	root, err := hsm.RootAPIKey(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	key, hsmID := root.String(), root.Identity().String()
	const configAdmin = "h1:8dWUSbcnFl3nMr8oMzgSK5liimFZGP7cZ9h4__z0fac"
	const clusterAdmin = "h1:ZG1r5J2fAEj5T2d0nso1FW7tT3p74Y5PxKlL_UTjALA"
	tests := []struct {
		name    string
		b       banner
		want    []string
		notWant []string
	}{
		{"first start", banner{APIKey: key, HSMRoot: true, Admin: hsmID},
			[]string{"API Key     " + key, "kes:v1:", "Admin       " + hsmID}, nil},
		{"restart", banner{HSMRoot: true, SoftHSM: true, Admin: hsmID},
			[]string{"API Key     shown on the first start only: keep identity $MINIO_KMS_HSM_KEY prints it", "Admin       " + hsmID},
			[]string{"k1:", "kes:v1:"}},
		{"restart on a PKCS#11 token", banner{HSMRoot: true, Admin: hsmID},
			[]string{"API Key     shown on the first start only, and by keep --pkcs11 when the token's key was created", "Admin       " + hsmID},
			[]string{"k1:", "kes:v1:", "MINIO_KMS_HSM_KEY"}},
		{"admin.identity in the config file", banner{Admin: configAdmin},
			[]string{"Admin       " + configAdmin}, []string{"API Key", "k1:"}},
		{"the cluster's admin", banner{HSMRoot: true, Admin: clusterAdmin, Cluster: true},
			[]string{"Admin       " + clusterAdmin + " (cluster setting admin.identity)"}, []string{"API Key", "k1:"}},
		{"the cluster's admin in a banner given the key", banner{APIKey: key, HSMRoot: true, Admin: clusterAdmin, Cluster: true},
			[]string{"Admin       " + clusterAdmin}, []string{"API Key", "k1:"}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		tt.b.write(&buf)
		out := buf.String()
		for _, s := range tt.want {
			if !strings.Contains(out, s) {
				t.Errorf("%s: banner does not show %q:\n%s", tt.name, s, out)
			}
		}
		for _, s := range tt.notWant {
			if strings.Contains(out, s) {
				t.Errorf("%s: banner shows %q:\n%s", tt.name, s, out)
			}
		}
		if !strings.HasSuffix(out, "=> Server is up and running...\n") {
			t.Errorf("%s: banner does not end with the ready line:\n%s", tt.name, out)
		}
	}
}

func mustSoftKey(t *testing.T) string {
	t.Helper()
	k, err := hsm.GenerateSoftKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
