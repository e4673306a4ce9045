package state

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// pageByScan is how list pages were made before the sorted index: scan and
// sort the whole map. It is the reference that page must agree with, and
// the baseline of BenchmarkPage.
func pageByScan[V any](m map[string]V, prefix, continueAt string, limit int) ([]string, string) {
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	names := make([]string, 0, len(m))
	for n := range m {
		if strings.HasPrefix(n, prefix) && n >= continueAt {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	if len(names) > limit {
		return names[:limit], names[limit]
	}
	return names, ""
}

func TestSortedMapPage(t *testing.T) {
	var m sortedMap[int]
	for i, n := range []string{"a", "ab", "abc", "abd", "b", "ba", "c", "d", "default"} {
		m.set(n, i)
	}
	m.delete("abd")
	m.set("abe", 99)
	tests := []struct {
		prefix, continueAt string
		limit              int
		want               []string
		next               string
	}{
		{"", "", 0, []string{"a", "ab", "abc", "abe", "b", "ba", "c", "d", "default"}, ""},
		{"", "", 3, []string{"a", "ab", "abc"}, "abe"},
		{"", "abd", 2, []string{"abe", "b"}, "ba"},      // continueAt that is no name
		{"ab", "", 0, []string{"ab", "abc", "abe"}, ""}, // prefix that is a name
		{"ab", "", 3, []string{"ab", "abc", "abe"}, ""}, // a full last page has no next
		{"ab", "", 2, []string{"ab", "abc"}, "abe"},
		{"ab", "a", 0, []string{"ab", "abc", "abe"}, ""}, // continueAt before the prefix
		{"ab", "abd", 0, []string{"abe"}, ""},
		{"ab", "b", 0, nil, ""}, // continueAt after the prefix's names
		{"b", "", 0, []string{"b", "ba"}, ""},
		{"d", "", 1, []string{"d"}, "default"},
		{"x", "", 0, nil, ""},
		{"", "zzz", 0, nil, ""},
		{"", "", -1, []string{"a", "ab", "abc", "abe", "b", "ba", "c", "d", "default"}, ""},
	}
	for _, tt := range tests {
		names, next := m.page(tt.prefix, tt.continueAt, tt.limit)
		if !slices.Equal(names, tt.want) || next != tt.next {
			t.Errorf("page(%q, %q, %d) = %q, %q; want %q, %q", tt.prefix, tt.continueAt, tt.limit, names, next, tt.want, tt.next)
		}
		oldNames, oldNext := pageByScan(m.byName, tt.prefix, tt.continueAt, tt.limit)
		if !slices.Equal(names, oldNames) || next != oldNext {
			t.Errorf("page(%q, %q, %d) = %q, %q; the scan gives %q, %q", tt.prefix, tt.continueAt, tt.limit, names, next, oldNames, oldNext)
		}
	}
}

// TestSortedMapPageRandom compares page with the scan on random names,
// prefixes and continuation points, and walks every list page by page.
func TestSortedMapPageRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	name := func() string {
		b := make([]byte, 1+r.IntN(4))
		for i := range b {
			b[i] = "ab-_z0"[r.IntN(6)]
		}
		return string(b)
	}
	var m sortedMap[struct{}]
	for range 3000 {
		if r.IntN(4) == 0 {
			m.delete(name())
		} else {
			m.set(name(), struct{}{})
		}
	}
	if m.len() != m.sorted.Len() {
		t.Fatalf("map holds %d names, the B-tree %d", m.len(), m.sorted.Len())
	}
	for range 300 {
		prefix, continueAt, limit := name(), "", 1+r.IntN(20)
		prefix = prefix[:r.IntN(min(3, len(prefix)+1))]
		if r.IntN(2) == 0 {
			continueAt = name()
		}
		names, next := m.page(prefix, continueAt, limit)
		oldNames, oldNext := pageByScan(m.byName, prefix, continueAt, limit)
		if !slices.Equal(names, oldNames) || next != oldNext {
			t.Fatalf("page(%q, %q, %d) = %q, %q; the scan gives %q, %q", prefix, continueAt, limit, names, next, oldNames, oldNext)
		}
		var all []string
		for at := ""; ; {
			names, at = m.page(prefix, at, limit)
			all = append(all, names...)
			if at == "" {
				break
			}
		}
		want, _ := pageByScan(m.byName, prefix, "", MaxPageSize)
		if !slices.Equal(all, want) {
			t.Fatalf("the pages of prefix %q by %d hold %d names, want %d", prefix, limit, len(all), len(want))
		}
	}
}

// BenchmarkPage is the cost of a list page of 100 keys in the middle of an
// enclave, from the sorted index (index) and by the scan that made pages
// before it (scan).
func BenchmarkPage(b *testing.B) {
	for _, n := range []int{1000, 100_000, 1_000_000} {
		var m sortedMap[*key]
		for i := range n {
			m.set(fmt.Sprintf("minio-key-%08d", i), &key{})
		}
		at := fmt.Sprintf("minio-key-%08d", n/2)
		b.Run(fmt.Sprintf("index/keys=%d", n), func(b *testing.B) {
			for b.Loop() {
				if names, _ := m.page("minio-", at, 100); len(names) != 100 {
					b.Fatal(len(names))
				}
			}
		})
		b.Run(fmt.Sprintf("scan/keys=%d", n), func(b *testing.B) {
			for b.Loop() {
				if names, _ := pageByScan(m.byName, "minio-", at, 100); len(names) != 100 {
					b.Fatal(len(names))
				}
			}
		})
	}
}
