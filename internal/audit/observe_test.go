package audit

import "testing"

// TestObserve checks that the observer sees every event, also with no sink
// and with writing to the sink turned off.
func TestObserve(t *testing.T) {
	for _, l := range []*Log{New(nil, false), New(&failingWriter{}, false)} {
		var seen []string
		l.Observe(func(events []Event) {
			for _, e := range events {
				seen = append(seen, e.Command)
			}
		})
		l.Record(Event{Command: "KEY:GENERATE"}, Event{Command: "KEY:DECRYPT"})
		l.SetEnabled(false)
		l.Record(Event{Command: "KEY:CREATE"})
		if len(seen) != 3 || seen[0] != "KEY:GENERATE" || seen[2] != "KEY:CREATE" {
			t.Errorf("observed %v, want KEY:GENERATE, KEY:DECRYPT, KEY:CREATE", seen)
		}
	}
}
