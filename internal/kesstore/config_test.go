package kesstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keep-kms/keep/test/testnode"
)

// testEnv is the environment of the config tests.
func testEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"KES_KEYSTORE": "/var/lib/kes/keys",
		"KES_EMPTY":    "",
		"KES_REL":      "keys",
	}[name]
	return v, ok
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		path   string // the fs path, if no error
		err    string // part of the error
		unsupp bool   // the error wraps ErrUnsupported
	}{
		{name: "fs", yaml: "version: v1\nkeystore:\n  fs:\n    path: /var/kes\n", path: "/var/kes"},
		{name: "no version (KES before v0.23)", yaml: "address: 0.0.0.0:7373\nkeystore:\n  fs:\n    path: keys\n", path: "keys"},
		{name: "relative path kept", yaml: "keystore:\n  fs:\n    path: ./a/../keys\n", path: "./a/../keys"},
		{name: "other sections ignored", yaml: "version: v1\ntls:\n  key: ${UNSET_BUT_UNUSED}\npolicy:\n  p: {allow: [\"/v1/key/*\"]}\nkeystore:\n  fs:\n    path: k\n", path: "k"},
		{name: "env", yaml: "keystore:\n  fs:\n    path: ${KES_KEYSTORE}\n", path: "/var/lib/kes/keys"},
		{name: "env quoted with spaces", yaml: "keystore:\n  fs:\n    path: \"  ${ KES_KEYSTORE }  \"\n", path: "/var/lib/kes/keys"},
		{name: "env relative", yaml: "keystore:\n  fs:\n    path: ${KES_REL}\n", path: "keys"},
		{name: "env only as the whole value", yaml: "keystore:\n  fs:\n    path: ${KES_REL}/sub\n", path: "${KES_REL}/sub"},
		{name: "env unset", yaml: "keystore:\n  fs:\n    path: ${KES_NOPE}\n", err: "line 3: environment variable KES_NOPE is not set"},
		{name: "env empty", yaml: "keystore:\n  fs:\n    path: ${KES_EMPTY}\n", err: "no path specified"},
		{name: "empty keystore of another kind ignored", yaml: "keystore:\n  vault:\n  fs:\n    path: k\n", path: "k"},
		{name: "vault", yaml: "keystore:\n  vault:\n    endpoint: https://vault:8200\n", err: "keystore vault is not supported by keep import-kes yet", unsupp: true},
		{name: "aws", yaml: "keystore:\n  aws:\n    secretsmanager:\n      region: x\n", err: "keystore aws is not supported by keep import-kes yet", unsupp: true},
		{name: "gcp", yaml: "keystore:\n  gcp:\n    secretmanager: {project_id: p}\n", err: "keystore gcp is not supported", unsupp: true},
		{name: "azure", yaml: "keystore:\n  azure:\n    keyvault: {endpoint: e}\n", err: "keystore azure is not supported", unsupp: true},
		{name: "entrust", yaml: "keystore:\n  entrust:\n    keycontrol: {endpoint: e}\n", err: "keystore entrust is not supported", unsupp: true},
		{name: "openbao", yaml: "keystore:\n  openbao:\n    endpoint: e\n", err: "keystore openbao is not supported", unsupp: true},
		{name: "odd kind quoted", yaml: "keystore:\n  \"a b\\n\": x\n", err: `keystore "a b\n" is not supported`, unsupp: true},
		{name: "two keystores", yaml: "keystore:\n  fs:\n    path: k\n  vault:\n    endpoint: e\n", err: "more than one keystore specified: fs, vault"},
		{name: "fs twice", yaml: "keystore:\n  fs:\n    path: a\n  fs:\n    path: b\n", err: "keystore fs is set twice"},
		{name: "no keystore section", yaml: "version: v1\naddress: :7373\n", err: "no keystore section"},
		{name: "null keystore section", yaml: "keystore:\n", err: "no keystore section"},
		{name: "empty keystore section", yaml: "keystore: {}\n", err: "no keystore specified"},
		{name: "keystore not a mapping", yaml: "keystore: [fs]\n", err: "keystore: not a mapping"},
		{name: "fs not a mapping", yaml: "keystore:\n  fs: /var/kes\n", err: "keystore fs: not a mapping"},
		{name: "fs without path", yaml: "keystore:\n  fs:\n    dir: x\n", err: "no path specified"},
		{name: "fs path not a string", yaml: "keystore:\n  fs:\n    path: [a, b]\n", err: "path: line 3: not a string"},
		{name: "version v2", yaml: "version: v2\nkeystore:\n  fs:\n    path: k\n", err: `invalid config version "v2"`},
		{name: "version not a string", yaml: "version: [v1]\nkeystore:\n  fs:\n    path: k\n", err: "invalid version"},
		{name: "empty file", yaml: "", err: "the file is empty"},
		{name: "comments only", yaml: "# nothing\n", err: "the file is empty"},
		{name: "not a mapping", yaml: "- keystore\n", err: "not a YAML mapping"},
		{name: "malformed YAML", yaml: "keystore:\n  fs:\n    path: [\n", err: "invalid YAML"},
		{name: "tabs", yaml: "keystore:\n\tfs:\n", err: "invalid YAML"},
		{name: "alias", yaml: "paths:\n  k: &k /srv/keys\nkeystore:\n  fs:\n    path: *k\n", path: "/srv/keys"},
		{name: "alias of the section", yaml: "x: &fs\n  path: /srv/keys\nkeystore:\n  fs: *fs\n", path: "/srv/keys"},
		{name: "merge key", yaml: "x: &fs\n  path: /srv/a\nkeystore:\n  fs:\n    <<: *fs\n", err: "line 5: merge keys (<<) are not supported"},
		{name: "merge of keystores", yaml: "x: &ks\n  vault:\n    endpoint: e\nkeystore:\n  <<: *ks\n", err: "line 5: merge keys (<<) are not supported"},
		{name: "two documents", yaml: "keystore:\n  fs:\n    path: a\n---\nkeystore:\n  fs:\n    path: b\n", path: "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.yaml), testEnv)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				if errors.Is(err, ErrUnsupported) != tt.unsupp {
					t.Errorf("errors.Is(%v, ErrUnsupported) = %v, want %v", err, !tt.unsupp, tt.unsupp)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fs, ok := c.Keystore.(*FSConfig)
			if !ok || c.Keystore.Kind() != "fs" {
				t.Fatalf("keystore %#v, want fs", c.Keystore)
			}
			if fs.Path != tt.path {
				t.Errorf("path %q, want %q", fs.Path, tt.path)
			}
		})
	}
}

// TestFixtureConfigs parses the KES configs of the migration fixture, which
// real KES servers ran with, and opens their keystore from the fixture's
// directory, where those servers were started.
func TestFixtureConfigs(t *testing.T) {
	dir := fixtureDir(t)
	for _, name := range []string{"kes-config.yml", "kes-config-legacy.yml"} {
		t.Run(name, func(t *testing.T) {
			c, err := ReadConfig(filepath.Join(dir, name), testEnv)
			if err != nil {
				t.Fatal(err)
			}
			t.Chdir(dir)
			ks, err := c.Keystore.Open()
			if err != nil {
				t.Fatal(err)
			}
			entries, err := ks.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			files, err := os.ReadDir(filepath.Join(dir, "keystore"))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != len(files) || len(entries) == 0 {
				t.Fatalf("%d entries, the directory has %d", len(entries), len(files))
			}
			for i, e := range entries {
				if e.Name != files[i].Name() || e.Skip != "" {
					t.Errorf("entry %d: %+v, want key %s", i, e, files[i].Name())
				}
			}
		})
	}
}

// TestRelativePathWorkingDirectory checks that a relative keystore path is
// resolved against the working directory, as KES does, and not against the
// config file's directory.
func TestRelativePathWorkingDirectory(t *testing.T) {
	root := t.TempDir()
	confDir := filepath.Join(root, "etc")
	workDir := filepath.Join(root, "work")
	for _, d := range []string{filepath.Join(confDir, "keys"), filepath.Join(workDir, "keys")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(workDir, "keys", "in-work-dir"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(confDir, "config.yml")
	if err := os.WriteFile(conf, []byte("keystore:\n  fs:\n    path: keys\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(workDir)
	c, err := ReadConfig(conf, testEnv)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := c.Keystore.Open()
	if err != nil {
		t.Fatal(err)
	}
	if want := "fs keystore " + filepath.Join(workDir, "keys"); ks.String() != want {
		t.Errorf("keystore %q, want %q", ks, want)
	}
	entries, err := ks.List(t.Context())
	if err != nil || len(entries) != 1 || entries[0].Name != "in-work-dir" {
		t.Errorf("entries %+v, %v; want the key of the working directory's keys/", entries, err)
	}

	t.Chdir(root)
	if _, err := c.Keystore.Open(); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "keys")+" does not exist") {
		t.Errorf("open from another directory: %v, want that %s does not exist", err, filepath.Join(root, "keys"))
	}
}

func TestReadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yml")
	if err := os.WriteFile(big, make([]byte, maxConfigSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("keystore:\n  vault:\n    endpoint: e\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ path, err string }{
		{filepath.Join(dir, "missing.yml"), "cannot read KES config"},
		{dir, "cannot read KES config " + dir},
		{big, "not a KES config"},
		{bad, "KES config " + bad + ": keystore vault is not supported"},
	} {
		if _, err := ReadConfig(tt.path, testEnv); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ReadConfig(%s): %v, want an error containing %q", tt.path, err, tt.err)
		}
	}
}

// fixtureDir returns the KES migration fixture set's directory, or skips
// the test.
func fixtureDir(t testing.TB) string {
	t.Helper()
	dir, err := testnode.KESFixtures()
	if err != nil {
		t.Skip(err)
	}
	return dir
}
