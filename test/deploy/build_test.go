// Package deploy tests the artifacts under deploy/ and the release
// material at the repository root: the build script, the licences, the man
// pages, the container image, the systemd unit, the Helm chart and the
// alert rules.
package deploy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/keep-kms/keep/internal/cli"
	"github.com/keep-kms/keep/test/aptget"
	"github.com/keep-kms/keep/test/testnode"
)

var buildLong = flag.Bool("build-long", false, "TestBuild: build both platforms (installing the arm64 C cross compiler as root), the second time with an empty build cache")

// allowedLicenses are the licence kinds a module linked into keep may have:
// those compatible with the AGPLv3 (docs/licenses.md says why).
var allowedLicenses = []string{"AGPL-3.0", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "MIT", "MPL-2.0"}

// licenseKinds tells the licences a licence file holds by phrases that
// each licence's text has and the others lack. It reports every kind
// found (a file may hold several: go.yaml.in/yaml/v3 is MIT and Apache),
// sorted; a file it recognizes nothing in gives none. GPL and LGPL texts
// are recognized so that they are named, and rejected: whether one is
// compatible depends on its version and needs a human.
func licenseKinds(text string) []string {
	t := strings.Join(strings.Fields(text), " ") // line breaks differ between copies
	has := func(phrases ...string) bool {
		for _, p := range phrases {
			if !strings.Contains(t, p) {
				return false
			}
		}
		return true
	}
	var kinds []string
	add := func(kind string, ok bool) {
		if ok {
			kinds = append(kinds, kind)
		}
	}
	affero := has("GNU AFFERO GENERAL PUBLIC LICENSE")
	add("AGPL-3.0", affero && has("Version 3"))
	add("GPL", !affero && has("GNU GENERAL PUBLIC LICENSE"))
	add("LGPL", has("GNU LESSER GENERAL PUBLIC LICENSE") || has("GNU LIBRARY GENERAL PUBLIC LICENSE"))
	add("Apache-2.0", has("Apache License", "Version 2.0"))
	add("MPL-2.0", has("Mozilla Public License", "2.0"))
	add("MIT", has("Permission is hereby granted, free of charge, to any person obtaining a copy"))
	add("ISC", has("Permission to use, copy, modify, and/or distribute this software for any purpose with or without fee is hereby granted"))
	bsd := has("Redistribution and use in source and binary forms, with or without modification, are permitted")
	endorse := has("to endorse or promote products derived from this software")
	add("BSD-3-Clause", bsd && endorse)
	add("BSD-2-Clause", bsd && !endorse)
	slices.Sort(kinds)
	return kinds
}

func TestLicenseKinds(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
	}{
		{"MIT", "Permission is hereby granted, free of charge,\nto any person obtaining a copy of this software", []string{"MIT"}},
		{"BSD-2", "Redistribution and use in source and binary forms, with or without\nmodification, are permitted provided that ...", []string{"BSD-2-Clause"}},
		{"BSD-3", "Redistribution and use in source and binary forms, with or without modification, are permitted ... Neither the name of Google Inc. nor the names of its contributors may be used to endorse or promote products derived from this software", []string{"BSD-3-Clause"}},
		{"Apache notice", `Licensed under the Apache License, Version 2.0 (the "License")`, []string{"Apache-2.0"}},
		{"MPL", "Mozilla Public License Version 2.0", []string{"MPL-2.0"}},
		{"AGPL", "GNU AFFERO GENERAL PUBLIC LICENSE\n Version 3, 19 November 2007 ... GNU General Public License", []string{"AGPL-3.0"}},
		{"GPL-2", "GNU GENERAL PUBLIC LICENSE\n Version 2, June 1991", []string{"GPL"}},
		{"LGPL", "GNU LESSER GENERAL PUBLIC LICENSE Version 3", []string{"LGPL"}},
		{"dual", "MIT License\nPermission is hereby granted, free of charge, to any person obtaining a copy\n\nLicensed under the Apache License, Version 2.0", []string{"Apache-2.0", "MIT"}},
		{"proprietary", "All rights reserved. Do not copy.", nil},
		{"SSPL", "Server Side Public License VERSION 1", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := licenseKinds(tc.text); !slices.Equal(got, tc.want) {
				t.Errorf("licenseKinds: %q, want %q", got, tc.want)
			}
		})
	}
}

// linkedModule is a module whose packages the keep binary links.
type linkedModule struct {
	Path, Dir string
}

// linkedModules lists the modules keep links on linux/amd64 and
// linux/arm64, with and without cgo, other than keep itself.
func linkedModules(t *testing.T) []linkedModule {
	t.Helper()
	root, err := testnode.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]linkedModule{}
	for _, env := range [][]string{
		{"GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=1"},
		{"GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=1"},
		{"GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0"},
		{"GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0"},
	} {
		cmd := exec.Command("go", "list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}}\t{{.Dir}}{{end}}{{end}}", "./cmd/keep")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list (%s): %v", strings.Join(env, " "), err)
		}
		for line := range strings.Lines(string(out)) {
			path, dir, ok := strings.Cut(strings.TrimSpace(line), "\t")
			if ok {
				seen[path] = linkedModule{Path: path, Dir: dir}
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("go list found no linked modules")
	}
	var mods []linkedModule
	for _, m := range seen {
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b linkedModule) int { return strings.Compare(a.Path, b.Path) })
	return mods
}

// licenseFileRE matches the names of licence files in a module's root.
var licenseFileRE = regexp.MustCompile(`(?i)^(licen[cs]e|copying)(\.(txt|md))?$`)

// TestLicenses checks every module keep links: it has a licence file, each
// licence in it is one of allowedLicenses, and docs/licenses.md lists the
// module with that licence, so that a new dependency under an incompatible
// licence fails here, and the table follows the dependencies.
func TestLicenses(t *testing.T) {
	root, err := testnode.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	documented := documentedLicenses(t, filepath.Join(root, "docs", "licenses.md"))
	for _, m := range linkedModules(t) {
		entries, err := os.ReadDir(m.Dir)
		if err != nil {
			t.Fatalf("%s: %v", m.Path, err)
		}
		var kinds []string
		for _, e := range entries {
			if e.IsDir() || !licenseFileRE.MatchString(e.Name()) {
				continue
			}
			text, err := os.ReadFile(filepath.Join(m.Dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, licenseKinds(string(text))...)
		}
		slices.Sort(kinds)
		kinds = slices.Compact(kinds)
		if len(kinds) == 0 {
			t.Errorf("%s: no licence file, or no licence recognized in it (in %s)", m.Path, m.Dir)
			continue
		}
		for _, k := range kinds {
			if !slices.Contains(allowedLicenses, k) {
				t.Errorf("%s: licence %s is not one of %s: check whether it is compatible with the AGPLv3 before linking it", m.Path, k, strings.Join(allowedLicenses, ", "))
			}
		}
		want := strings.Join(kinds, " AND ")
		if got, ok := documented[m.Path]; !ok {
			t.Errorf("docs/licenses.md does not list %s (%s)", m.Path, want)
		} else if got != want {
			t.Errorf("docs/licenses.md gives %s the licence %q, its licence file says %q", m.Path, got, want)
		}
		delete(documented, m.Path)
	}
	for path := range documented {
		t.Errorf("docs/licenses.md lists %s, which keep does not link", path)
	}
}

// documentedLicenses reads the module table of docs/licenses.md: module
// path to licence.
func documentedLicenses(t *testing.T, file string) map[string]string {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for line := range strings.Lines(string(text)) {
		cells := strings.Split(strings.Trim(strings.TrimSpace(line), "|"), "|")
		if len(cells) != 3 || !strings.Contains(cells[0], ".") {
			continue // not a module row (header, separator, prose)
		}
		rows[strings.TrimSpace(cells[0])] = strings.TrimSpace(cells[1])
	}
	return rows
}

// TestLicenseFile checks that LICENSE is the GNU AGPLv3 text unaltered, as
// kms-go ships it, and that the README and `keep version` name it.
func TestLicenseFile(t *testing.T) {
	root, err := testnode.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ours, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	// The text at https://www.gnu.org/licenses/agpl-3.0.txt.
	const agplSHA256 = "8486a10c4393cee1c25392769ddd3b2d6c242d6ec7928e1414efff7dfb2f07ef"
	if sum := sha256.Sum256(ours); hex.EncodeToString(sum[:]) != agplSHA256 {
		t.Errorf("LICENSE: SHA-256 %x, want %s (the GNU AGPLv3 text)", sum, agplSHA256)
	}
	for _, m := range linkedModules(t) {
		if m.Path != "github.com/minio/kms-go/kms" {
			continue
		}
		theirs, err := os.ReadFile(filepath.Join(m.Dir, "LICENSE"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Error("LICENSE differs from kms-go's LICENSE")
		}
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(readme, []byte("AGPL-3.0-or-later")) {
		t.Error("README.md does not name the licence AGPL-3.0-or-later")
	}
}

// versionInfo is the output of keep version --json.
type versionInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Date      string `json:"date"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	License   string `json:"license"`
	FIPS140   bool   `json:"fips140"`
	PKCS11    bool   `json:"pkcs11"`
}

// TestBuild runs deploy/build.sh twice into different directories, as two
// release builds of one commit would, and checks that the binaries are
// byte-identical (SHA256SUMS), and that keep version prints what the script
// stamped. It builds linux/amd64 with cgo from the warm build cache, in the
// checkout and in a copy of it without .git; with -build-long, both
// platforms, the second time from an empty build cache.
func TestBuild(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("deploy/build.sh builds linux binaries; this test runs them on linux/amd64, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	root, err := testnode.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	platforms := "linux/amd64"
	if *buildLong {
		platforms = "linux/amd64 linux/arm64"
		aptget.Need(t, "aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
	}
	const version = "v0.0.0-buildtest"
	epoch := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	commit, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	build := func(src string, env ...string) (dir string, sums []byte) {
		dir = t.TempDir()
		cmd := exec.Command(filepath.Join(src, "deploy", "build.sh"), "-o", dir, version)
		cmd.Dir = t.TempDir() // the script finds the sources by its own path
		cmd.Env = append(os.Environ(), append(env, "KEEP_PLATFORMS="+platforms, fmt.Sprint("SOURCE_DATE_EPOCH=", epoch.Unix()))...)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("deploy/build.sh in %s: %v\n%s", src, err, out)
		}
		t.Logf("deploy/build.sh %s in %s: %v", platforms, src, time.Since(start).Round(time.Second))
		sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
		if err != nil {
			t.Fatal(err)
		}
		return dir, sums
	}
	dir1, sums1 := build(root)
	// The second build is of a copy of the sources elsewhere, without .git,
	// as from a source archive: -trimpath keeps the directory out of the
	// binary, and the caller names the commit.
	env := []string{"KEEP_COMMIT=" + strings.TrimSpace(string(commit))}
	if *buildLong {
		env = append(env, "GOCACHE="+t.TempDir())
	}
	_, sums2 := build(copySources(t, root), env...)
	if !bytes.Equal(sums1, sums2) {
		t.Errorf("two builds differ:\n%s\n%s", sums1, sums2)
	}
	if n := len(strings.Fields(platforms)); bytes.Count(sums1, []byte("\n")) != n {
		t.Errorf("SHA256SUMS lists %d binaries, want %d:\n%s", bytes.Count(sums1, []byte("\n")), n, sums1)
	}

	bin := filepath.Join(dir1, "keep-linux-amd64")
	for _, fips := range []string{"off", "on"} {
		cmd := exec.Command(bin, "version", "--json")
		cmd.Env = append(testnode.BaseEnv(t.TempDir()), "GODEBUG=fips140="+fips)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("keep version --json: %v", err)
		}
		var v versionInfo
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("keep version --json: %v\n%s", err, out)
		}
		want := versionInfo{
			Version: version, Commit: strings.TrimSpace(string(commit)), Date: epoch.Format(time.RFC3339),
			GoVersion: runtime.Version(), Platform: "linux/amd64", License: "AGPL-3.0-or-later",
			FIPS140: fips == "on", PKCS11: true,
		}
		if v != want {
			t.Errorf("keep version --json with GODEBUG=fips140=%s:\n got %+v\nwant %+v", fips, v, want)
		}
	}
	// Stripped (-s -w) and built with -trimpath: no paths of the build
	// machine in the binary.
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "-trimpath=true") {
		t.Errorf("go version -m: not built with -trimpath:\n%s", out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(root)) {
		t.Errorf("the binary contains the build directory %s", root)
	}
}

// copySources copies the files of the working tree that git tracks, or
// would (not ignored), as they are now, into a new directory.
func copySources(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	for name := range strings.SplitSeq(strings.TrimRight(string(out), "\x00"), "\x00") {
		info, err := os.Lstat(filepath.Join(root, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestManPages runs deploy/man and checks that it wrote one page per
// command a user can run, and no other.
func TestManPages(t *testing.T) {
	root, err := testnode.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "run", "./deploy/man", dir)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./deploy/man: %v\n%s", err, out)
	}
	want := map[string]*cobra.Command{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.IsAvailableCommand() && c.HasParent() {
			return
		}
		want[strings.ReplaceAll(c.CommandPath(), " ", "-")+".1"] = c
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cli.Command())
	for _, must := range []string{"keep.1", "keep-server.1", "keep-version.1", "keep-completion-bash.1", "keep-config-set.1"} {
		if want[must] == nil {
			t.Errorf("the command tree has no %s", must)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		c := want[e.Name()]
		if c == nil {
			t.Errorf("deploy/man wrote %s, which is no command", e.Name())
			continue
		}
		delete(want, e.Name())
		page, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(page), ".nh\n.TH ") || !strings.Contains(string(page), ".SH SYNOPSIS") {
			t.Errorf("%s is not a man page:\n%s", e.Name(), testnode.Tail(string(page), 512))
		}
	}
	for name := range want {
		t.Errorf("deploy/man wrote no %s", name)
	}
}
