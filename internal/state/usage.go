package state

import (
	"errors"
	"fmt"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/usage"
)

// ErrKeyInUse refuses to delete or disable, unless forced, a key version
// that decrypted anything in the last usage.Window days.
var ErrKeyInUse = errors.New("key version is in use")

// applyUsageReport merges a node's report into the usage table. Versions
// the state no longer has (destroyed since the node counted) are left out;
// the rest of the report still counts.
func (s *State) applyUsageReport(e *Entry) error {
	if e.Usage == nil {
		return fmt.Errorf("%w: usage entry without report", ErrInvalidArgument)
	}
	if err := e.Usage.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidArgument, err)
	}
	r := *e.Usage
	r.Versions = nil
	for _, v := range e.Usage.Versions {
		if s.hasVersion(v.ID()) {
			r.Versions = append(r.Versions, v)
		}
	}
	s.usage.Apply(&r, e.Time)
	return nil
}

// hasVersion reports whether the key version id exists; the caller holds
// s.mu.
func (s *State) hasVersion(id usage.ID) bool {
	enc, ok := s.enclaves.get(id.Enclave)
	if !ok {
		return false
	}
	k, ok := enc.keys.get(id.Name)
	if !ok {
		return false
	}
	_, ok = k.version(id.Version)
	return ok
}

// dropUsage drops the usage of the key versions that no longer exist after
// a write whose outcome is err; the caller holds s.mu.
func (s *State) dropUsage(err error) error {
	if err == nil {
		s.usage.Retain(s.hasVersion)
	}
	return err
}

// keepCounters gives the versions of s that old has too the counters of
// old, so that what they counted since their last report is not lost
// when a snapshot replaces the state, and their material unsealed if it
// is the same, sealed alike under the same root key; the caller holds
// old.mu.
func (s *State) keepCounters(old *State) {
	same := sameKey(s.rootKey, old.rootKey)
	for en, enc := range s.enclaves.byName {
		oldEnc, ok := old.enclaves.get(en)
		if !ok {
			continue
		}
		for kn, k := range enc.keys.byName {
			oldKey, ok := oldEnc.keys.get(kn)
			if !ok {
				continue
			}
			for _, v := range k.versions {
				ov, ok := oldKey.version(v.Version)
				if !ok {
					continue
				}
				ou := ov.use.Load()
				switch {
				case ou == nil:
				case ou.key != (crypto.Key{}) && v.sealed == ov.sealed && same:
					// The same material: the version stays unsealed.
					v.use.Store(ou)
				case v.use.Load() == nil:
					v.use.Store(&inUse{counter: ou.counter})
				default:
					// Unsealed already (legacy or KES): its counter
					// becomes the one the version had.
					v.use.Store(&inUse{key: v.use.Load().key, counter: ou.counter})
				}
			}
		}
	}
}

// KeyUsage returns the usage of every key that was used, summed over its
// versions.
func (s *State) KeyUsage() []usage.KeyUsage {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.usage.Keys(time.Now())
}

// UsageCounters returns the counters of every key version used on this
// node (the others have none), for this node's usage reports.
func (s *State) UsageCounters() []usage.Counted {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var list []usage.Counted
	for en, enc := range s.enclaves.byName {
		for kn, k := range enc.keys.byName {
			for _, v := range k.versions {
				// A version never used on this node has no counter, and
				// nothing to report.
				if u := v.use.Load(); u != nil {
					list = append(list, usage.Counted{ID: usage.ID{Enclave: en, Name: kn, Version: v.Version}, Counter: u.counter})
				}
			}
		}
	}
	return list
}
