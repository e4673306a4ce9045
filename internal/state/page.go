package state

import "strings"

// Page sizes of list replies. MinIO reads only the first page of a key
// list, so the default is generous.
const (
	DefaultPageSize = 1000
	MaxPageSize     = 10000
)

// page returns the names that start with prefix, in order, from continueAt
// (inclusive) on, at most limit of them, and the name that starts the next
// page, or "" when there is none. ascend calls f with the names from pivot
// on, in order, until f returns false: a page seeks once and walks no
// further than the name after it.
func page(ascend func(pivot string, f func(string) bool), prefix, continueAt string, limit int) ([]string, string) {
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	var (
		names []string
		next  string
	)
	// The names with the prefix are one run of the order, from the prefix
	// itself on.
	ascend(max(prefix, continueAt), func(n string) bool {
		if !strings.HasPrefix(n, prefix) {
			return false
		}
		if len(names) == limit {
			next = n
			return false
		}
		names = append(names, n)
		return true
	})
	return names, next
}
