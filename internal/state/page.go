package state

import (
	"slices"
	"strings"
)

// Page sizes of list replies. MinIO reads only the first page of a key
// list, so the default is generous.
const (
	DefaultPageSize = 1000
	MaxPageSize     = 10000
)

// page returns the sorted names of m that start with prefix, from continueAt
// (inclusive) on, at most limit of them, and the name that starts the next
// page, or "" when there is none.
func page[V any](m map[string]V, prefix, continueAt string, limit int) ([]string, string) {
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
