package state

import (
	"unique"

	"github.com/tidwall/btree"
)

// sortedMap holds values by name twice: in a hash map, where the hot path
// (a key's lookup for generate and decrypt) finds them, and in a B-tree
// kept in order, where a list page seeks and walks (O(page · log n)) and
// whose copy a snapshot takes in O(1). The B-tree's Copy is copy-on-write:
// a copy sees the values of the moment it was taken, whatever is set or
// deleted later, so the values themselves must never change in place.
//
// The zero sortedMap is empty; set makes it usable.
type sortedMap[V any] struct {
	byName map[string]V
	sorted btree.Map[string, V]
}

func (m *sortedMap[V]) get(name string) (V, bool) {
	v, ok := m.byName[name]
	return v, ok
}

func (m *sortedMap[V]) set(name string, v V) {
	if m.byName == nil {
		m.byName = map[string]V{}
	}
	m.byName[name] = v
	m.sorted.Set(name, v)
}

func (m *sortedMap[V]) delete(name string) {
	delete(m.byName, name)
	m.sorted.Delete(name)
}

func (m *sortedMap[V]) len() int { return len(m.byName) }

// frozen returns a copy of m's values in order, which no later change to m
// alters. The caller holds the state's read lock and State.copying.
func (m *sortedMap[V]) frozen() *btree.Map[string, V] { return m.sorted.Copy() }

// page returns a page of m's names (see page).
func (m *sortedMap[V]) page(prefix, continueAt string, limit int) ([]string, string) {
	return page(func(pivot string, f func(string) bool) {
		m.sorted.Ascend(pivot, func(name string, _ V) bool { return f(name) })
	}, prefix, continueAt, limit)
}

// intern returns the one copy of s that the process keeps. Every key
// version holds its type and the identity that created it, and a million
// of them share a few of each: a copy per key would cost more than the
// key's name.
func intern[T ~string](s T) T { return unique.Make(s).Value() }
