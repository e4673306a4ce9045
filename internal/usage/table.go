package usage

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Window is how many UTC days of counts a table keeps: today and the 29
// days before.
const Window = 30

// day is a UTC day, counted from 1970-01-01.
type day int64

func dayOf(t time.Time) day {
	sec := t.Unix()
	if sec < 0 {
		sec -= 86399 // round down before 1970 too
	}
	return day(sec / 86400)
}

func (d day) String() string { return time.Unix(int64(d)*86400, 0).UTC().Format(time.DateOnly) }

// Usage is what a table knows of one key version, summed over every node.
type Usage struct {
	LastGenerate time.Time // zero: never reported
	LastDecrypt  time.Time
	Generates30d uint64 // in the Window days up to today
	Decrypts30d  uint64
}

// Table is the cluster's usage of its key versions: per version the last
// generate and decrypt and the counts per UTC day of the last Window days,
// merged from reports. It is part of the replicated state, so what it
// holds depends only on the reports applied and the times of their log
// entries, never on the clock of the node that applies them. It is not
// safe for concurrent use: the state locks it.
type Table struct {
	// today is the day of the newest entry applied: counts of days up to
	// today-Window are pruned.
	today     day
	versions  map[ID]*record
	reporters map[string]reporter
}

type record struct {
	lastGenerate time.Time
	lastDecrypt  time.Time
	days         []dayCount // ascending; only days after today-Window
}

type dayCount struct {
	day       day
	generates uint64
	decrypts  uint64
}

// reporter is the last report applied of a reporter and the day it came.
type reporter struct {
	seq uint64
	day day
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{versions: map[ID]*record{}, reporters: map[string]reporter{}}
}

// Apply merges report r, carried by a log entry of time at, into t. It
// reports false and changes nothing if r was applied before (its sequence
// number is not above its reporter's last). The counts go to the UTC day
// of at; counts older than Window days are dropped.
func (t *Table) Apply(r *Report, at time.Time) bool {
	d := dayOf(at)
	if last, ok := t.reporters[r.Reporter]; ok && r.Seq <= last.seq {
		return false
	}
	if d > t.today {
		t.today = d
		t.prune()
	}
	t.reporters[r.Reporter] = reporter{seq: r.Seq, day: max(d, t.reporters[r.Reporter].day)}
	for i := range r.Versions {
		v := &r.Versions[i]
		rec := t.versions[v.ID()]
		if rec == nil {
			rec = &record{}
			t.versions[v.ID()] = rec
		}
		rec.lastGenerate = later(rec.lastGenerate, v.LastGenerate)
		rec.lastDecrypt = later(rec.lastDecrypt, v.LastDecrypt)
		if d > t.today-Window && (v.Generates > 0 || v.Decrypts > 0) {
			rec.add(d, v.Generates, v.Decrypts)
		}
	}
	return true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b.UTC()
	}
	return a
}

func (r *record) add(d day, generates, decrypts uint64) {
	i, found := slices.BinarySearchFunc(r.days, d, func(c dayCount, d day) int { return cmp.Compare(c.day, d) })
	if !found {
		r.days = slices.Insert(r.days, i, dayCount{day: d})
	}
	r.days[i].generates = addSat(r.days[i].generates, generates)
	r.days[i].decrypts = addSat(r.days[i].decrypts, decrypts)
}

// addSat adds without wrapping around: a count that would overflow stays
// at the largest, not near zero.
func addSat(a, b uint64) uint64 {
	if sum := a + b; sum >= a {
		return sum
	}
	return math.MaxUint64
}

// prune drops the counts of days up to today-Window, and the reporters
// that have not reported since: a reporter is a process, and processes
// end.
func (t *Table) prune() {
	oldest := t.today - Window + 1
	for _, rec := range t.versions {
		i := 0
		for i < len(rec.days) && rec.days[i].day < oldest {
			i++
		}
		rec.days = slices.Delete(rec.days, 0, i)
	}
	maps.DeleteFunc(t.reporters, func(_ string, r reporter) bool { return r.day < oldest })
}

// Usage returns the usage of a key version, with the counts of the Window
// UTC days up to the day of now.
func (t *Table) Usage(id ID, now time.Time) Usage {
	rec := t.versions[id]
	if rec == nil {
		return Usage{}
	}
	u := Usage{LastGenerate: rec.lastGenerate, LastDecrypt: rec.lastDecrypt}
	today := dayOf(now)
	for _, c := range rec.days {
		if c.day > today-Window && c.day <= today {
			u.Generates30d = addSat(u.Generates30d, c.generates)
			u.Decrypts30d = addSat(u.Decrypts30d, c.decrypts)
		}
	}
	return u
}

// KeyUsage is the usage of a key, summed over its versions.
type KeyUsage struct {
	Enclave, Name string
	Usage
}

// Keys returns the usage of every key the table knows, summed over its
// versions (the last uses are the latest of any version), sorted by
// enclave and name.
func (t *Table) Keys(now time.Time) []KeyUsage {
	type keyID struct{ enclave, name string }
	sums := map[keyID]*KeyUsage{}
	for id := range t.versions {
		k := keyID{id.Enclave, id.Name}
		s := sums[k]
		if s == nil {
			s = &KeyUsage{Enclave: id.Enclave, Name: id.Name}
			sums[k] = s
		}
		u := t.Usage(id, now)
		s.LastGenerate = later(s.LastGenerate, u.LastGenerate)
		s.LastDecrypt = later(s.LastDecrypt, u.LastDecrypt)
		s.Generates30d = addSat(s.Generates30d, u.Generates30d)
		s.Decrypts30d = addSat(s.Decrypts30d, u.Decrypts30d)
	}
	list := make([]KeyUsage, 0, len(sums))
	for _, s := range sums {
		list = append(list, *s)
	}
	slices.SortFunc(list, func(a, b KeyUsage) int {
		return cmp.Or(cmp.Compare(a.Enclave, b.Enclave), cmp.Compare(a.Name, b.Name))
	})
	return list
}

// Retain drops the usage of every version keep does not keep: versions
// destroyed, keys and enclaves deleted.
func (t *Table) Retain(keep func(ID) bool) {
	maps.DeleteFunc(t.versions, func(id ID, _ *record) bool { return !keep(id) })
}

// Empty reports whether t holds nothing: no report was ever applied, or
// everything was pruned.
func (t *Table) Empty() bool { return len(t.versions) == 0 && len(t.reporters) == 0 }

// The JSON of a table, for snapshots and backups: lists in a fixed order,
// days spelt as dates.
type (
	tableJSON struct {
		Today     string         `json:"today,omitempty"`
		Versions  []versionJSON  `json:"versions,omitempty"`
		Reporters []reporterJSON `json:"reporters,omitempty"`
	}
	versionJSON struct {
		Enclave      string    `json:"enclave"`
		Name         string    `json:"name"`
		Version      uint32    `json:"version"`
		LastGenerate time.Time `json:"last_generate,omitzero"`
		LastDecrypt  time.Time `json:"last_decrypt,omitzero"`
		Days         []dayJSON `json:"days,omitempty"`
	}
	dayJSON struct {
		Day       string `json:"day"`
		Generates uint64 `json:"generates,omitempty"`
		Decrypts  uint64 `json:"decrypts,omitempty"`
	}
	reporterJSON struct {
		Reporter string `json:"reporter"`
		Seq      uint64 `json:"seq"`
		Day      string `json:"day"`
	}
)

// MarshalJSON encodes t, sorted, so that equal tables encode alike.
func (t *Table) MarshalJSON() ([]byte, error) {
	var j tableJSON
	if t.today != 0 {
		j.Today = t.today.String()
	}
	ids := slices.SortedFunc(maps.Keys(t.versions), func(a, b ID) int {
		return cmp.Or(cmp.Compare(a.Enclave, b.Enclave), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Version, b.Version))
	})
	for _, id := range ids {
		rec := t.versions[id]
		v := versionJSON{Enclave: id.Enclave, Name: id.Name, Version: id.Version, LastGenerate: rec.lastGenerate, LastDecrypt: rec.lastDecrypt}
		for _, c := range rec.days {
			v.Days = append(v.Days, dayJSON{Day: c.day.String(), Generates: c.generates, Decrypts: c.decrypts})
		}
		j.Versions = append(j.Versions, v)
	}
	for _, name := range slices.Sorted(maps.Keys(t.reporters)) {
		r := t.reporters[name]
		j.Reporters = append(j.Reporters, reporterJSON{Reporter: name, Seq: r.seq, Day: r.day.String()})
	}
	return json.Marshal(&j)
}

// UnmarshalJSON decodes what MarshalJSON encoded, and refuses what it
// never encodes: unparsable days, days out of order, a version twice.
func (t *Table) UnmarshalJSON(data []byte) error {
	var j tableJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("usage table: %w", err)
	}
	n := NewTable()
	if j.Today != "" {
		d, err := parseDay(j.Today)
		if err != nil {
			return err
		}
		n.today = d
	}
	for _, v := range j.Versions {
		id := ID{Enclave: v.Enclave, Name: v.Name, Version: v.Version}
		if _, dup := n.versions[id]; dup {
			return fmt.Errorf("usage table: version %d of key %q in enclave %q is listed twice", id.Version, id.Name, id.Enclave)
		}
		rec := &record{lastGenerate: v.LastGenerate.UTC(), lastDecrypt: v.LastDecrypt.UTC()}
		for _, dj := range v.Days {
			d, err := parseDay(dj.Day)
			if err != nil {
				return err
			}
			if len(rec.days) > 0 && d <= rec.days[len(rec.days)-1].day {
				return fmt.Errorf("usage table: days of version %d of key %q are not in ascending order", id.Version, id.Name)
			}
			rec.days = append(rec.days, dayCount{day: d, generates: dj.Generates, decrypts: dj.Decrypts})
		}
		n.versions[id] = rec
	}
	for _, r := range j.Reporters {
		d, err := parseDay(r.Day)
		if err != nil {
			return err
		}
		if _, dup := n.reporters[r.Reporter]; dup {
			return fmt.Errorf("usage table: reporter %q is listed twice", r.Reporter)
		}
		n.reporters[r.Reporter] = reporter{seq: r.Seq, day: d}
	}
	*t = *n
	return nil
}

func parseDay(s string) (day, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return 0, fmt.Errorf("usage table: day %q: %w", s, err)
	}
	return dayOf(t), nil
}
