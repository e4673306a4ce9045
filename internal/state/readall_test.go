package state

import (
	"bytes"
	"io"
	"runtime"
	"testing"
)

// lyingSize is a reader that claims a size of its own.
type lyingSize struct {
	io.Reader
	size int64
}

func (l lyingSize) Size() int64 { return l.size }

// TestReadAll checks that readAll returns every byte whatever size a
// reader claims, and that a reader of the right size is read with one
// buffer of its size.
func TestReadAll(t *testing.T) {
	data := bytes.Repeat([]byte("keep"), 100_000)
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"unsized", io.MultiReader(bytes.NewReader(data))},
		{"sized", bytes.NewReader(data)},
		{"claims less", lyingSize{bytes.NewReader(data), 10}},
		{"claims more", lyingSize{bytes.NewReader(data), int64(len(data)) * 2}},
		{"claims nothing", lyingSize{bytes.NewReader(data), 0}},
		{"claims too much", lyingSize{bytes.NewReader(data), maxPrealloc + 1}},
	} {
		got, err := readAll(tc.r)
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: read %d bytes, %v; want %d", tc.name, len(got), err, len(data))
		}
	}

	const size = 64 << 20
	big := make([]byte, size)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := readAll(bytes.NewReader(big))
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != size {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > size+size/16 {
		t.Errorf("reading %d bytes of a sized reader allocated %d", size, allocated)
	}
}
