package usage

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// FuzzReport decodes a report as a log entry carries it and, if it is
// valid, applies it: the table it makes survives a JSON round trip
// unchanged, and a second application changes nothing.
func FuzzReport(f *testing.F) {
	f.Add([]byte(`{"reporter":"a","seq":1,"versions":[{"enclave":"e","name":"k","version":1,"decrypts":3,"last_decrypt":"2026-12-06T10:00:00Z"}]}`), int64(1796551200))
	f.Fuzz(func(t *testing.T, data []byte, at int64) {
		var r Report
		if json.Unmarshal(data, &r) != nil || r.Validate() != nil {
			return
		}
		when := time.Unix(at%253402300800, 0).UTC() // years 1 to 9999, as JSON spells them
		tab := NewTable()
		tab.Apply(&r, when)
		first, err := json.Marshal(tab)
		if err != nil {
			t.Fatal(err)
		}
		if tab.Apply(&r, when) {
			t.Error("a report was applied twice")
		}
		back := NewTable()
		if err := json.Unmarshal(first, back); err != nil {
			t.Fatalf("%v: %s", err, first)
		}
		second, _ := json.Marshal(back)
		if !bytes.Equal(first, second) {
			t.Errorf("round trip changed the table:\n%s\n%s", first, second)
		}
	})
}
