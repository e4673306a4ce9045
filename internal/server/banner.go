package server

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"

	"aead.dev/mtls"

	"github.com/keep-kms/keep/internal/api/kes"
	"github.com/keep-kms/keep/internal/buildinfo"
	"github.com/keep-kms/keep/internal/cluster"
	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/service"
)

// banner is what a node prints once it serves.
type banner struct {
	HSM       string
	ClusterID string
	Status    cluster.NodeStatus
	Endpoint  string
	// APIKey is the HSM-derived root API key, shown only on the first
	// start of a cluster (and in dev mode); "" otherwise.
	APIKey  string
	HSMRoot bool   // the node's own root is the HSM-derived key, not its config's admin.identity
	SoftHSM bool   // the node's HSM is a soft HSM key, from which keep identity computes the root API key
	Admin   string // the root identity in effect
	Cluster bool   // Admin is the cluster's admin (the setting admin.identity)
	Dev     bool
	DevCert string // the file of a dev node's self-signed certificate
}

func (b *banner) write(w io.Writer) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "%-12s%s\n", label, fmt.Sprintf(format, args...))
	}
	commit := ""
	if buildinfo.Commit != "" {
		commit = "  commit=" + buildinfo.Commit
	}
	if buildinfo.FIPS140() {
		commit += "  fips140=on"
	}
	line("Version", "%s%s", buildinfo.Version, commit)
	if b.Dev {
		line("HSM", "%s (in memory, dev mode: state is lost on exit)", b.HSM)
	} else {
		line("HSM", "%s", b.HSM)
	}
	line("Cluster ID", "%s", b.ClusterID)
	ids := slices.SortedFunc(maps.Keys(b.Status.Nodes), func(a, c string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(c)
		return x - y
	})
	for _, id := range ids {
		mark := ""
		if id == b.Status.ID {
			mark = " <-"
		}
		line("", "Node %s: %s%s", id, b.Status.Nodes[id], mark)
	}
	line("Endpoint", "%s", b.Endpoint)
	if b.DevCert != "" {
		line("Certificate", "%s (self-signed: clients that verify, such as MinIO, must trust it)", b.DevCert)
	}
	// Both APIs take the same key and identity, spelled their own way: the
	// MinIO KMS API k1:… and h1:…, the KES API kes:v1:… and hex.
	switch {
	case b.APIKey != "" && !b.Cluster:
		line("API Key", "%s", b.APIKey)
		if k, err := mtls.ParsePrivateKey(b.APIKey); err == nil {
			if kesKey, ok := kes.APIKey(k); ok {
				line("", "%s", kesKey)
			}
		}
	case b.HSMRoot && !b.Cluster && b.SoftHSM:
		line("API Key", "shown on the first start only: keep identity $MINIO_KMS_HSM_KEY prints it")
	case b.HSMRoot && !b.Cluster:
		line("API Key", "shown on the first start only, and by keep --pkcs11 when the token's key was created")
	}
	if b.Cluster {
		line("Admin", "%s (cluster setting %s)", b.Admin, service.SettingAdminIdentity)
	} else {
		line("Admin", "%s", b.Admin)
	}
	if id := identity.Hex(b.Admin); id != b.Admin {
		line("", "%s", id)
	}
	fmt.Fprintln(w, "=> Server is up and running...")
}
