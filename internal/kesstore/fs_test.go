package kesstore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keep-kms/keep/internal/kesformat"
)

// writeFile writes a file of the test keystore.
func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestFSList(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"app-key", "A_1", "_x", "max-" + strings.Repeat("k", 76)} {
		writeFile(t, filepath.Join(dir, name), []byte("{}"))
	}
	for _, name := range []string{".hidden", "key.bak", "-lead", "trail-", "_", "too-long-" + strings.Repeat("k", 72), "sp ace", "ünï"} {
		writeFile(t, filepath.Join(dir, name), []byte("{}"))
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("app-key", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}

	ks, err := OpenFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ks.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for i, e := range entries {
		if i > 0 && entries[i-1].Name >= e.Name {
			t.Errorf("entries not sorted: %q before %q", entries[i-1].Name, e.Name)
		}
		got[e.Name] = e.Skip
	}
	badName := "name not accepted by KES as a key name"
	want := map[string]string{
		"app-key": "", "A_1": "", "_x": "", "max-" + strings.Repeat("k", 76): "",
		"link":    "", // a key name: Read refuses it, so that it is reported
		".hidden": badName, "key.bak": badName, "-lead": badName, "trail-": badName, "_": badName,
		"too-long-" + strings.Repeat("k", 72): badName, "sp ace": badName, "ünï": badName,
		"subdir": "directory",
		"fifo":   "not a regular file (named pipe)",
	}
	if len(got) != len(want) {
		t.Errorf("%d entries, want %d: %v", len(got), len(want), got)
	}
	for name, skip := range want {
		if g, ok := got[name]; !ok || g != skip {
			t.Errorf("entry %q: listed %v, skip %q; want skip %q", name, ok, g, skip)
		}
	}
}

func TestFSRead(t *testing.T) {
	dir := t.TempDir()
	content := []byte(`{"bytes":"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="}`)
	writeFile(t, filepath.Join(dir, "key"), content)
	writeFile(t, filepath.Join(dir, "largest"), make([]byte, kesformat.MaxKeyFileSize))
	writeFile(t, filepath.Join(dir, "too-large"), make([]byte, kesformat.MaxKeyFileSize+1))
	writeFile(t, filepath.Join(dir, "empty"), nil)
	outside := filepath.Join(t.TempDir(), "outside")
	writeFile(t, outside, content)
	if err := os.Symlink(outside, filepath.Join(dir, "link-out")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("key", filepath.Join(dir, "link-in")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("nowhere", filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	ks, err := OpenFS(dir)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		size int   // of the content, if no error
		is   error // the error wraps it
		err  string
	}{
		{name: "key", size: len(content)},
		{name: "largest", size: kesformat.MaxKeyFileSize},
		{name: "empty", size: 0},
		{name: "too-large", is: ErrTooLarge, err: "1048577 bytes, KES reads at most 1048576"},
		{name: "link-out", is: ErrNotRegular, err: "symbolic link, not followed"},
		{name: "link-in", is: ErrNotRegular, err: "symbolic link, not followed"},
		{name: "dangling", is: ErrNotRegular, err: "symbolic link"},
		{name: "subdir", is: ErrNotRegular, err: "not a regular file"},
		{name: "fifo", is: ErrNotRegular, err: "named pipe"},
		{name: "missing", is: fs.ErrNotExist},
		{name: "../outside", err: "not a KES key name"},
		{name: ".hidden", err: "not a KES key name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := ks.Read(t.Context(), tt.name)
			if tt.is == nil && tt.err == "" {
				if err != nil || len(data) != tt.size {
					t.Fatalf("read %d bytes, %v; want %d", len(data), err, tt.size)
				}
				return
			}
			if err == nil {
				t.Fatalf("read %d bytes, want an error", len(data))
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.err) {
				t.Errorf("error %v does not contain %q", err, tt.err)
			}
		})
	}

	if data, _ := ks.Read(t.Context(), "key"); string(data) != string(content) {
		t.Errorf("content %q, want %q", data, content)
	}
}

// TestFSReadUnreadable reads a file without read permission; root reads
// every file, so the test needs another user.
func TestFSReadUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files without read permission")
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "locked"), []byte("{}"))
	if err := os.Chmod(filepath.Join(dir, "locked"), 0); err != nil {
		t.Fatal(err)
	}
	ks, err := OpenFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Read(t.Context(), "locked"); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("error %v, want permission denied", err)
	}
}

func TestOpenFS(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, nil)
	for _, tt := range []struct{ path, err string }{
		{filepath.Join(dir, "missing"), filepath.Join(dir, "missing") + " does not exist"},
		{file, file + " is not a directory"},
	} {
		if _, err := OpenFS(tt.path); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("OpenFS(%s): %v, want an error containing %q", tt.path, err, tt.err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenFS created the missing directory: %v", err)
	}
}

func TestFilter(t *testing.T) {
	entries := []Entry{{Name: "app-key"}, {Name: "minio-1"}, {Name: "minio-2"}, {Name: "minio"}, {Name: "sub", Skip: "directory"}}
	tests := []struct {
		pattern string
		want    []string
		err     bool
	}{
		{"", []string{"app-key", "minio-1", "minio-2", "minio", "sub"}, false},
		{"*", []string{"app-key", "minio-1", "minio-2", "minio", "sub"}, false},
		{"minio-*", []string{"minio-1", "minio-2"}, false},
		{"minio*", []string{"minio-1", "minio-2", "minio"}, false},
		{"minio-?", []string{"minio-1", "minio-2"}, false},
		{"minio-[2-9]", []string{"minio-2"}, false},
		{"app-key", []string{"app-key"}, false},
		{"nothing-*", nil, false},
		{"minio-[", nil, true},
	}
	for _, tt := range tests {
		got, err := Filter(entries, tt.pattern)
		if tt.err {
			if err == nil || !strings.Contains(err.Error(), "invalid key pattern") {
				t.Errorf("Filter(%q): %v, want an invalid pattern error", tt.pattern, err)
			}
			continue
		}
		var names []string
		for _, e := range got {
			names = append(names, e.Name)
		}
		if err != nil || strings.Join(names, ",") != strings.Join(tt.want, ",") {
			t.Errorf("Filter(%q) = %v, %v; want %v", tt.pattern, names, err, tt.want)
		}
	}
}
