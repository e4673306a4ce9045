package usage

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"
)

var (
	day0 = time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	v1   = ID{Enclave: "e", Name: "k", Version: 1}
	v2   = ID{Enclave: "e", Name: "k", Version: 2}
	o1   = ID{Enclave: "e", Name: "other", Version: 1}
)

func report(reporter string, seq uint64, vs ...VersionReport) *Report {
	return &Report{Reporter: reporter, Seq: seq, Versions: vs}
}

func decrypts(id ID, n uint64, last time.Time) VersionReport {
	return VersionReport{Enclave: id.Enclave, Name: id.Name, Version: id.Version, Decrypts: n, LastDecrypt: last}
}

func generates(id ID, n uint64, last time.Time) VersionReport {
	return VersionReport{Enclave: id.Enclave, Name: id.Name, Version: id.Version, Generates: n, LastGenerate: last}
}

type applied struct {
	r  *Report
	at time.Time
}

func TestTable(t *testing.T) {
	days := func(n int) time.Time { return day0.AddDate(0, 0, n) }
	tests := []struct {
		name    string
		reports []applied
		id      ID
		now     time.Time
		want    Usage
	}{
		{name: "nothing", id: v1, now: day0},
		{
			name: "summed over reporters",
			reports: []applied{
				{report("a", 1, decrypts(v1, 3, day0.Add(-time.Minute))), day0},
				{report("b", 1, decrypts(v1, 4, day0.Add(-time.Second))), day0},
				{report("c", 1, generates(v1, 5, day0.Add(-time.Hour))), day0},
			},
			id: v1, now: day0,
			want: Usage{LastDecrypt: day0.Add(-time.Second), LastGenerate: day0.Add(-time.Hour), Decrypts30d: 7, Generates30d: 5},
		},
		{
			name: "a report applied once",
			reports: []applied{
				{report("a", 1, decrypts(v1, 3, day0)), day0},
				{report("a", 1, decrypts(v1, 3, day0)), day0},
				{report("a", 2, decrypts(v1, 1, day0)), day0},
				{report("a", 2, decrypts(v1, 1, day0)), day0},
			},
			id: v1, now: day0,
			want: Usage{LastDecrypt: day0, Decrypts30d: 4},
		},
		{
			name: "an older last use does not win",
			reports: []applied{
				{report("a", 1, decrypts(v1, 1, day0)), day0},
				{report("b", 1, decrypts(v1, 1, day0.Add(-time.Hour))), day0},
			},
			id: v1, now: day0,
			want: Usage{LastDecrypt: day0, Decrypts30d: 2},
		},
		{
			name: "versions apart",
			reports: []applied{
				{report("a", 1, decrypts(v1, 1, day0), decrypts(v2, 2, day0), decrypts(o1, 4, day0)), day0},
			},
			id: v2, now: day0,
			want: Usage{LastDecrypt: day0, Decrypts30d: 2},
		},
		{
			name: "days add up over 30 days",
			reports: []applied{
				{report("a", 1, decrypts(v1, 1, days(-29))), days(-29)},
				{report("a", 2, decrypts(v1, 2, days(-1))), days(-1)},
				{report("a", 3, decrypts(v1, 4, day0)), day0},
			},
			id: v1, now: day0,
			want: Usage{LastDecrypt: day0, Decrypts30d: 7},
		},
		{
			name: "the 31st day back is out, at read",
			reports: []applied{
				{report("a", 1, decrypts(v1, 1, days(-30))), days(-30)},
				{report("a", 2, decrypts(v1, 2, days(-29))), days(-29)},
			},
			id: v1, now: day0,
			want: Usage{LastDecrypt: days(-29), Decrypts30d: 2},
		},
		{
			name: "pruned by a newer entry",
			reports: []applied{
				{report("a", 1, decrypts(v1, 1, days(-30))), days(-30)},
				{report("a", 2, decrypts(o1, 2, day0)), day0},
			},
			id: v1, now: days(-30),
			want: Usage{LastDecrypt: days(-30)},
		},
		{
			name: "a late entry of a pruned day counts its times only",
			reports: []applied{
				{report("a", 1, decrypts(o1, 1, day0)), day0},
				{report("b", 1, decrypts(v1, 2, days(-31))), days(-31)},
			},
			id: v1, now: days(-31),
			want: Usage{LastDecrypt: days(-31)},
		},
		{
			name: "a late entry of a kept day counts",
			reports: []applied{
				{report("a", 1, decrypts(o1, 1, day0)), day0},
				{report("b", 1, decrypts(v1, 2, days(-3))), days(-3)},
			},
			id: v1, now: day0,
			want: Usage{LastDecrypt: days(-3), Decrypts30d: 2},
		},
		{
			name: "counts saturate",
			reports: []applied{
				{report("a", 1, decrypts(v1, math.MaxUint64-1, day0)), day0},
				{report("b", 1, decrypts(v1, 5, day0)), day0},
				{report("c", 1, decrypts(v1, 1, day0.AddDate(0, 0, -1))), day0.AddDate(0, 0, -1)},
			},
			id: v1, now: day0,
			want: Usage{LastDecrypt: day0, Decrypts30d: math.MaxUint64},
		},
		{
			name: "rollover at UTC midnight",
			reports: []applied{
				{report("a", 1, decrypts(v1, 1, time.Date(2026, 12, 6, 23, 59, 59, 0, time.UTC))), time.Date(2026, 12, 6, 23, 59, 59, 0, time.UTC)},
				{report("a", 2, decrypts(v1, 2, time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC))), time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)},
			},
			id: v1, now: time.Date(2027, 1, 5, 12, 0, 0, 0, time.UTC), // 30 days after Dec 6
			want: Usage{LastDecrypt: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), Decrypts30d: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := NewTable()
			for _, a := range tt.reports {
				tab.Apply(a.r, a.at)
			}
			if got := tab.Usage(tt.id, tt.now); got != tt.want {
				t.Errorf("Usage = %+v, want %+v", got, tt.want)
			}
			// What a snapshot holds answers alike.
			data, err := json.Marshal(tab)
			if err != nil {
				t.Fatal(err)
			}
			back := NewTable()
			if err := json.Unmarshal(data, back); err != nil {
				t.Fatalf("%v: %s", err, data)
			}
			if got := back.Usage(tt.id, tt.now); got != tt.want {
				t.Errorf("after a JSON round trip Usage = %+v, want %+v", got, tt.want)
			}
			again, _ := json.Marshal(back)
			if !bytes.Equal(again, data) {
				t.Errorf("JSON round trip changed the table:\n%s\n%s", data, again)
			}
		})
	}
}

// TestTableDeterministic applies the same entries to two tables, and in
// two orders of reports that commute: the tables encode alike.
func TestTableDeterministic(t *testing.T) {
	entries := []applied{
		{report("a", 1, decrypts(v1, 1, day0), generates(v2, 2, day0)), day0},
		{report("b", 7, decrypts(v1, 3, day0.Add(time.Minute))), day0.Add(time.Minute)},
		{report("a", 2, decrypts(o1, 5, day0.AddDate(0, 0, 31))), day0.AddDate(0, 0, 31)},
	}
	encode := func(order []int) []byte {
		tab := NewTable()
		for _, i := range order {
			tab.Apply(entries[i].r, entries[i].at)
		}
		data, err := json.Marshal(tab)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	first := encode([]int{0, 1, 2})
	if second := encode([]int{0, 1, 2}); !bytes.Equal(first, second) {
		t.Errorf("same entries, different tables:\n%s\n%s", first, second)
	}
	if swapped := encode([]int{1, 0, 2}); !bytes.Equal(first, swapped) {
		t.Errorf("commuting reports, different tables:\n%s\n%s", first, swapped)
	}
}

func TestTableKeysAndRetain(t *testing.T) {
	tab := NewTable()
	tab.Apply(report("a", 1, decrypts(v1, 1, day0.Add(-time.Hour)), decrypts(v2, 2, day0), generates(o1, 4, day0)), day0)
	keys := tab.Keys(day0)
	want := []KeyUsage{
		{Enclave: "e", Name: "k", Usage: Usage{LastDecrypt: day0, Decrypts30d: 3}},
		{Enclave: "e", Name: "other", Usage: Usage{LastGenerate: day0, Generates30d: 4}},
	}
	if len(keys) != len(want) || keys[0] != want[0] || keys[1] != want[1] {
		t.Errorf("Keys = %+v, want %+v", keys, want)
	}
	tab.Retain(func(id ID) bool { return id != v2 })
	if u := tab.Usage(v2, day0); u != (Usage{}) {
		t.Errorf("usage of a dropped version = %+v", u)
	}
	if u := tab.Usage(v1, day0); u.Decrypts30d != 1 {
		t.Errorf("usage of a kept version = %+v", u)
	}
	if tab.Empty() {
		t.Error("Empty with two versions")
	}
	if !NewTable().Empty() {
		t.Error("a new table is not empty")
	}
}

func TestTableUnmarshalRefuses(t *testing.T) {
	tests := map[string]string{
		"not JSON":          `[`,
		"bad today":         `{"today":"yesterday"}`,
		"bad day":           `{"versions":[{"enclave":"e","name":"k","version":1,"days":[{"day":"2026-13-01"}]}]}`,
		"days out of order": `{"versions":[{"enclave":"e","name":"k","version":1,"days":[{"day":"2026-12-02"},{"day":"2026-12-01"}]}]}`,
		"day twice":         `{"versions":[{"enclave":"e","name":"k","version":1,"days":[{"day":"2026-12-01"},{"day":"2026-12-01"}]}]}`,
		"version twice":     `{"versions":[{"enclave":"e","name":"k","version":1},{"enclave":"e","name":"k","version":1}]}`,
		"reporter twice":    `{"reporters":[{"reporter":"a","seq":1,"day":"2026-12-01"},{"reporter":"a","seq":2,"day":"2026-12-01"}]}`,
		"bad reporter day":  `{"reporters":[{"reporter":"a","seq":1,"day":""}]}`,
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if err := json.Unmarshal([]byte(data), NewTable()); err == nil {
				t.Errorf("decoded %s", data)
			}
		})
	}
}

func TestReportValidate(t *testing.T) {
	many := make([]VersionReport, MaxReportVersions+1)
	for i := range many {
		many[i] = decrypts(v1, 1, day0)
	}
	tests := []struct {
		name string
		r    Report
		ok   bool
	}{
		{"valid", *report("a", 1, decrypts(v1, 1, day0)), true},
		{"at the limit", Report{Reporter: "a", Seq: 1, Versions: many[:MaxReportVersions]}, true},
		{"over the limit", Report{Reporter: "a", Seq: 1, Versions: many}, false},
		{"no reporter", *report("", 1, decrypts(v1, 1, day0)), false},
		{"long reporter", *report(string(make([]byte, maxReporterLen+1)), 1, decrypts(v1, 1, day0)), false},
		{"seq 0", *report("a", 0, decrypts(v1, 1, day0)), false},
		{"no versions", *report("a", 1), false},
		{"version 0", *report("a", 1, decrypts(ID{Enclave: "e", Name: "k"}, 1, day0)), false},
		{"no name", *report("a", 1, decrypts(ID{Enclave: "e", Version: 1}, 1, day0)), false},
		{"no enclave", *report("a", 1, decrypts(ID{Name: "k", Version: 1}, 1, day0)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.r.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
