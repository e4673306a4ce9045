package attack

// The root credential. Before the fix, the root API key was derived from
// the HSM key, printed on every start (into journald and container logs),
// and could be neither replaced nor disabled cluster-wide: admin.identity
// was a per-node config file entry, and `keep config set admin.identity=…`
// was refused as an unknown setting. Audit records of configuration
// changes said "PUT" and nothing else, and audit=off left no trace.

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"aead.dev/mtls"
	"github.com/minio/kms-go/kes"
	"github.com/minio/kms-go/kms"

	"github.com/keep-kms/keep/test/testnode"
)

// TestRootRevocable replaces the HSM-derived root of a 3-node cluster
// with a registered SysAdmin through the CLI and checks, on every node and
// on both APIs, that the old root is locked out and the new admin is in;
// that the cluster cannot be locked out by a mistyped or deleted admin;
// that a restarted node no longer prints the root API key; and that the
// changes, audit=off among them, are in every node's audit file.
func TestRootRevocable(t *testing.T) {
	t.Parallel()
	c := newAuditedCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hsmRoot := c.nodes[0].Root
	if !strings.Contains(c.nodes[0].Banner, c.nodes[0].APIKey) {
		t.Fatalf("the first start of a cluster does not print its root API key:\n%s", c.nodes[0].Banner)
	}
	admin, other := testnode.NewAPIKey(t), testnode.NewAPIKey(t)
	for _, k := range []mtls.PrivateKey{admin, other} {
		if r := c.cli(t, c.nodes[0].APIKey, "add-identity", k.Identity().String(), "--sysadmin"); r.Code != 0 {
			t.Fatalf("keep add-identity --sysadmin: %s", r)
		}
	}
	adminKey := admin.String()

	t.Run("an unknown admin is refused and changes nothing", func(t *testing.T) {
		unknown := testnode.NewAPIKey(t)
		r := c.cli(t, c.nodes[0].APIKey, "config", "set", "admin.identity="+unknown.Identity().String())
		if r.Code == 0 || !strings.Contains(r.Stderr, "is not registered") {
			t.Errorf("admin.identity=<unregistered identity>: exit %d, stderr %q; want refused as not registered", r.Code, r.Stderr)
		}
		// An API key where the identity belongs: refused, and not repeated.
		r = c.cli(t, c.nodes[0].APIKey, "config", "set", "admin.identity="+unknown.String())
		if r.Code == 0 || !strings.Contains(r.Stderr, "not an API key") || strings.Contains(r.Stdout+r.Stderr, unknown.String()) {
			t.Errorf("admin.identity=<API key>: exit %d, stderr %q; want refused without the key", r.Code, r.Stderr)
		}
		for _, n := range c.nodes {
			if _, err := n.Client(t, hsmRoot).ListEnclaves(ctx, &kms.ListRequest{}); err != nil {
				t.Errorf("%s: the HSM-derived root after the refused changes: %s", n.Name, testnode.DescribeErr(err))
			}
		}
		// The refused attempts are audited, by name, without the key.
		if _, ok := waitRecord(t, c.audit[0], func(r auditRecord) bool {
			return r.Command == "NODE:CONFIG" && r.Status == http.StatusBadRequest && r.Resource == "PUT admin.identity"
		}); !ok {
			t.Errorf("no audit record of the refused change of admin.identity")
		}
		if data, err := os.ReadFile(c.audit[0]); err != nil || strings.Contains(string(data), unknown.String()) {
			t.Errorf("the audit file holds the API key typed into admin.identity (%v)", err)
		}
	})

	t.Run("only the admin may hand over the root", func(t *testing.T) {
		r := c.cli(t, other.String(), "config", "set", "admin.identity="+other.Identity().String())
		if r.Code == 0 || !strings.Contains(r.Stderr, "access denied") {
			t.Errorf("a SysAdmin that is not the admin sets admin.identity: exit %d, stderr %q; want access denied", r.Code, r.Stderr)
		}
	})

	t.Run("replace the root through the CLI", func(t *testing.T) {
		r := c.cli(t, c.nodes[0].APIKey, "config", "set", "admin.identity="+admin.Identity().String())
		if r.Code != 0 {
			t.Fatalf("keep config set admin.identity=<SysAdmin>: %s", r)
		}
		if !strings.Contains(r.Stdout, "admin.identity") || !strings.Contains(r.Stdout, admin.Identity().String()) {
			t.Errorf("keep config set admin.identity: the reply does not show the new admin: %s", r.Stdout)
		}
	})

	t.Run("the HSM-derived root gets 403 on every node and API", func(t *testing.T) {
		for _, n := range c.nodes {
			_, err := n.Client(t, hsmRoot).ListEnclaves(ctx, &kms.ListRequest{})
			if testnode.StatusOf(err) != http.StatusForbidden {
				t.Errorf("%s: ListEnclaves with the HSM-derived root: %s, want 403", n.Name, testnode.DescribeErr(err))
			}
			err = n.Client(t, hsmRoot).CreateKey(ctx, "", &kms.CreateKeyRequest{Name: "by-old-root-" + n.Name})
			if testnode.StatusOf(err) != http.StatusForbidden {
				t.Errorf("%s: CreateKey with the HSM-derived root: %s, want 403", n.Name, testnode.DescribeErr(err))
			}
			if _, _, err := n.KESClient(t, hsmRoot).DescribeSelf(ctx); !errors.Is(err, kes.ErrNotAllowed) {
				t.Errorf("%s: KES DescribeSelf with the HSM-derived root: %v, want 403", n.Name, err)
			}
			if err := n.KESClient(t, hsmRoot).CreateKey(ctx, "kes-by-old-root-"+n.Name); !errors.Is(err, kes.ErrNotAllowed) {
				t.Errorf("%s: KES CreateKey with the HSM-derived root: %v, want 403", n.Name, err)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.Endpoint()+"/v1/config", nil)
			resp, err := testnode.HTTPClient(t, hsmRoot, time.Minute).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: GET /v1/config with the HSM-derived root: %s, want 403", n.Name, resp.Status)
			}
		}
	})

	t.Run("the new admin works on every node and API", func(t *testing.T) {
		// It is the root, not a SysAdmin like any other: every node says so.
		for _, n := range c.nodes {
			var view configOf
			r := testnode.CLI(t, []string{n.Endpoint()}, adminKey, "config", "get", "--json", "-k")
			if r.Code != 0 {
				t.Fatalf("%s: keep config get as the new admin: %s", n.Name, r)
			}
			if err := jsonUnmarshal(r.Stdout, &view); err != nil || view.Cluster["admin.identity"] != admin.Identity().String() || view.Effective["admin.identity"] != admin.Identity().String() {
				t.Errorf("%s: keep config get: %v, %+v; want admin.identity %s", n.Name, err, view, admin.Identity())
			}
		}
		for _, n := range c.nodes {
			kc := n.Client(t, admin)
			if err := kc.CreateEnclave(ctx, &kms.CreateEnclaveRequest{Name: "by-admin-" + n.Name}); err != nil {
				t.Errorf("%s: CreateEnclave as the new admin: %s", n.Name, testnode.DescribeErr(err))
			}
			info, _, err := n.KESClient(t, admin).DescribeSelf(ctx)
			if err != nil || !info.IsAdmin {
				t.Errorf("%s: KES DescribeSelf as the new admin: %+v, %v", n.Name, info, err)
			}
			if err := n.KESClient(t, admin).CreateKey(ctx, "kes-by-admin-"+n.Name); err != nil {
				t.Errorf("%s: KES CreateKey as the new admin: %v", n.Name, err)
			}
		}
	})

	t.Run("deleting the admin is refused", func(t *testing.T) {
		r := c.cli(t, adminKey, "rm-identity", admin.Identity().String())
		if r.Code == 0 || !strings.Contains(r.Stderr, "is the cluster's admin") {
			t.Errorf("keep rm-identity <admin>: exit %d, stderr %q; want refused as the cluster's admin", r.Code, r.Stderr)
		}
		err := c.nodes[2].Client(t, other).DeleteIdentity(ctx, "", &kms.DeleteIdentityRequest{Identity: admin.Identity()})
		if testnode.StatusOf(err) != http.StatusBadRequest {
			t.Errorf("DeleteIdentity <admin> by another SysAdmin: %s, want 400", testnode.DescribeErr(err))
		}
		if _, err := c.nodes[1].Client(t, admin).ListEnclaves(ctx, &kms.ListRequest{}); err != nil {
			t.Errorf("the admin after the refused deletes: %s", testnode.DescribeErr(err))
		}
	})

	t.Run("a restarted node does not print the root API key", func(t *testing.T) {
		n := c.nodes[1]
		n.Restart()
		if strings.Contains(n.Banner, "k1:") || strings.Contains(n.Banner, "kes:v1:") {
			t.Errorf("the banner of a restart shows an API key:\n%s", n.Banner)
		}
		r := testnode.Run(t, testnode.BaseEnv(t.TempDir()), "identity", c.hsmKey)
		if r.Code != 0 || !strings.Contains(r.Stdout, hsmRoot.String()) {
			t.Errorf("keep identity HSM-KEY does not print the root API key %s: %s", hsmRoot, r)
		}
		if !strings.Contains(n.Banner, admin.Identity().String()) {
			t.Errorf("the banner of a restart does not name the cluster's admin %s:\n%s", admin.Identity(), n.Banner)
		}
		// The restarted node still knows the admin: the setting is state.
		if _, err := n.Client(t, hsmRoot).ListEnclaves(ctx, &kms.ListRequest{}); testnode.StatusOf(err) != http.StatusForbidden {
			t.Errorf("%s after a restart: the HSM-derived root gets %s, want 403", n.Name, testnode.DescribeErr(err))
		}
		if _, err := n.Client(t, admin).ListEnclaves(ctx, &kms.ListRequest{}); err != nil {
			t.Errorf("%s after a restart: the admin gets %s", n.Name, testnode.DescribeErr(err))
		}
	})

	t.Run("settings changes are audited with what they changed", func(t *testing.T) {
		want := `admin.identity="` + admin.Identity().String() + `"`
		hsmID := hsmRoot.Identity().String()
		if _, ok := waitRecord(t, c.audit[0], func(r auditRecord) bool {
			return r.Command == "NODE:CONFIG" && r.Identity == hsmID && r.Status == http.StatusOK && strings.Contains(r.Resource, want)
		}); !ok {
			t.Errorf("the audit file of the node that served it has no NODE:CONFIG record naming %s", want)
		}
		for i, file := range c.audit {
			if _, ok := waitRecord(t, file, func(r auditRecord) bool {
				return r.Identity == hsmID && r.Resource == want
			}); !ok {
				t.Errorf("%s: no audit record of the change %s by %s", c.nodes[i].Name, want, hsmID)
			}
		}
	})

	t.Run("audit=off is audited on every node before it takes effect", func(t *testing.T) {
		// By a SysAdmin that is not the admin: any SysAdmin may.
		r := c.cli(t, other.String(), "config", "set", "audit=off")
		if r.Code != 0 {
			t.Fatalf("keep config set audit=off: %s", r)
		}
		for i, file := range c.audit {
			if _, ok := waitRecord(t, file, func(r auditRecord) bool {
				return r.Identity == other.Identity().String() && r.Resource == `audit="off"`
			}); !ok {
				t.Errorf("%s: the audit file has no record that %s turned audit off", c.nodes[i].Name, other.Identity())
			}
		}
		// And it is off: a request after it is not recorded.
		before := len(auditRecords(t, c.audit[2]))
		if _, err := c.nodes[2].Client(t, other).ListEnclaves(ctx, &kms.ListRequest{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if after := len(auditRecords(t, c.audit[2])); after != before {
			t.Errorf("%s: %d records written with audit=off", c.nodes[2].Name, after-before)
		}
	})

	t.Run("the admin gives the HSM-derived root back", func(t *testing.T) {
		r := c.cli(t, hsmRoot.String(), "config", "set", "admin.identity=")
		if r.Code == 0 {
			t.Errorf("the disabled HSM-derived root re-enabled itself: %s", r)
		}
		if r := c.cli(t, adminKey, "config", "set", "admin.identity="); r.Code != 0 {
			t.Fatalf("keep config set admin.identity= as the admin: %s", r)
		}
		for _, n := range c.nodes {
			if _, err := n.Client(t, hsmRoot).ListEnclaves(ctx, &kms.ListRequest{}); err != nil {
				t.Errorf("%s: the HSM-derived root after the reset: %s", n.Name, testnode.DescribeErr(err))
			}
		}
		// The former admin is an ordinary SysAdmin now, and may go.
		if r := c.cli(t, c.nodes[0].APIKey, "rm-identity", admin.Identity().String()); r.Code != 0 {
			t.Errorf("keep rm-identity <former admin>: %s", r)
		}
	})
}

// TestRootKeyNotReprinted restarts a node whose root is the HSM-derived
// key: the first start prints the key, a restart does not (its logs end
// up in journald and container logs), and the key still works.
func TestRootKeyNotReprinted(t *testing.T) {
	t.Parallel()
	n := testnode.Start(t, testnode.Options{})
	key := n.APIKey
	if !strings.Contains(n.Banner, key) {
		t.Fatalf("the first start does not print the root API key:\n%s", n.Banner)
	}
	n.Restart()
	if strings.Contains(n.Stdout(), "k1:") || strings.Contains(n.Stdout(), "kes:v1:") {
		t.Errorf("a restart prints an API key:\n%s", n.Stdout())
	}
	if !strings.Contains(n.Banner, "keep identity") {
		t.Errorf("the banner of a restart does not say where the key is:\n%s", n.Banner)
	}
	if n.APIKey != key {
		t.Fatalf("the root API key derived from the HSM key %s is not the one the first start printed, %s", n.APIKey, key)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := n.RootClient(t).ListEnclaves(ctx, &kms.ListRequest{}); err != nil {
		t.Errorf("the root API key after a restart: %s", testnode.DescribeErr(err))
	}
}
