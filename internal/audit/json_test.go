package audit

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// TestAppendJSON checks that appendJSONs writes what encoding/json writes.
func TestAppendJSON(t *testing.T) {
	events := []Event{
		{},
		{Time: time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC), Node: "127.0.0.1:7373", Identity: "h1:abc", IP: "::1",
			API: "minkms", Command: "KEY:GENERATE", Enclave: "minio", Resource: "my-key", Status: 200, Latency: 52 * time.Microsecond},
		{Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600)), API: "kes", Command: "/v1/key/generate/k",
			Resource: "quote\" back\\slash <tag> & \n\r\t\b\f\x00\x1f \u2028\u2029 ü 日本 \xff\xfe", Status: 503, Error: "audit log is unavailable: \"x\"", Latency: -1},
	}
	for _, e := range events {
		want, err := json.Marshal(&e)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, '\n')
		if got := appendJSONs(nil, []Event{e}); !bytes.Equal(got, want) {
			t.Errorf("appendJSONs:\n got %s\nwant %s", got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	f.Add("plain")
	f.Add("<\"\\\x00\u2028\xff>")
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func BenchmarkAppendJSON(b *testing.B) {
	e := Event{Time: time.Now().UTC(), Node: "127.0.0.1:7373", Identity: "h1:dKLlDNcUUOzGvjrTQZDfVC1aCMdgB7nFbQs7Y06ia24", IP: "127.0.0.1",
		API: "minkms", Command: "KEY:GENERATE", Enclave: "minio", Resource: "minio-default-key", Status: 200, Latency: 52345}
	var buf []byte
	for b.Loop() {
		buf = appendJSONs(buf[:0], []Event{e})
	}
}

// TestAppendJSONs checks that records sharing their leading fields encode
// as each would alone.
func TestAppendJSONs(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 8, 0, 0, 123, time.UTC)
	events := []Event{
		{Time: t0, Node: "n:7373", Identity: "h1:x", IP: "127.0.0.1", API: "minkms", Command: "KEY:GENERATE", Resource: "a", Status: 200},
		{Time: t0, Node: "n:7373", Identity: "h1:x", IP: "127.0.0.1", API: "minkms", Command: "KEY:GENERATE", Resource: "b", Status: 404, Error: "key does not exist"},
		{Time: t0.Add(time.Second), Node: "n:7373", API: "kes", Command: "KEY:CREATE", Resource: "c", Status: 200},
		{Time: t0.Add(time.Second), Node: "n:7373", API: "kes", Command: "KEY:CREATE", Resource: "d", Status: 200},
	}
	var want []byte
	for i := range events {
		want = appendJSONs(want, events[i:i+1])
	}
	if got := appendJSONs(nil, events); !bytes.Equal(got, want) {
		t.Fatalf("appendJSONs:\n got %s\nwant %s", got, want)
	}
}
