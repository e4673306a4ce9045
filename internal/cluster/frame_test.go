package cluster

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

func TestReadFrame(t *testing.T) {
	valid := appendFrame(nil, frame{id: 7, aux: 250, payload: []byte("entry")})
	for _, tc := range []struct {
		name    string
		in      []byte
		max     uint32
		want    frame
		wantErr error
	}{
		{"valid", valid, 64, frame{id: 7, aux: 250, payload: []byte("entry")}, nil},
		{"empty payload", appendFrame(nil, frame{id: 1}), 64, frame{id: 1, payload: []byte{}}, nil},
		{"payload at the limit", valid, 5, frame{id: 7, aux: 250, payload: []byte("entry")}, nil},
		{"payload over the limit", valid, 4, frame{}, errFrameTooLarge},
		{"no bytes", nil, 64, frame{}, io.EOF},
		{"short header", valid[:10], 64, frame{}, io.ErrUnexpectedEOF},
		{"short payload", valid[:len(valid)-1], 64, frame{}, io.ErrUnexpectedEOF},
		{"header only", valid[:frameHeaderSize], 64, frame{}, io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readFrame(bufio.NewReader(bytes.NewReader(tc.in)), tc.max)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if got.id != tc.want.id || got.aux != tc.want.aux || !bytes.Equal(got.payload, tc.want.payload) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzReadFrame checks that any input either decodes to a frame that
// encodes back to the bytes it was read from, or fails; never a panic.
func FuzzReadFrame(f *testing.F) {
	f.Add(appendFrame(nil, frame{id: 1, aux: 10000, payload: []byte(`{"create_key":{"enclave":"e","name":"k"}}`)}))
	f.Add(appendFrame(nil, frame{id: 1 << 63, payload: []byte(`{"index":12,"error":{"message":"key already exists","kind":3}}`)}))
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := readFrame(bufio.NewReader(bytes.NewReader(in)), 1<<16)
		if err != nil {
			return
		}
		if out := appendFrame(nil, fr); !bytes.Equal(out, in[:len(out)]) {
			t.Fatalf("frame %+v encodes to %x, read from %x", fr, out, in)
		}
	})
}

// TestFrameWriter writes frames from many goroutines at once: every frame
// arrives whole, and a writer whose connection fails says so.
func TestFrameWriter(t *testing.T) {
	client, server := net.Pipe()
	w := newFrameWriter()
	go w.run(client)

	const writers, each = 16, 50
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range each {
				payload := fmt.Appendf(nil, "frame %d of %d", i, g)
				if err := w.write(appendFrame(nil, frame{id: uint64(g), aux: uint32(i), payload: payload})); err != nil {
					t.Errorf("write: %v", err)
				}
			}
		})
	}
	r := bufio.NewReader(server)
	next := make([]uint32, writers) // frames of one writer arrive in order
	for range writers * each {
		f, err := readFrame(r, 1<<10)
		if err != nil {
			t.Fatal(err)
		}
		if f.id >= writers || f.aux != next[f.id] || string(f.payload) != fmt.Sprintf("frame %d of %d", f.aux, f.id) {
			t.Fatalf("frame %+v out of order or damaged", f)
		}
		next[f.id]++
	}
	wg.Wait()

	server.Close()
	w.write(appendFrame(nil, frame{id: 1})) // handed over, then fails on the closed pipe
	<-w.broken
	if err := w.write(appendFrame(nil, frame{id: 2})); !errors.Is(err, errNotSent) || !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("write after the connection failed: %v, want %v and %v", err, errNotSent, io.ErrClosedPipe)
	}
}

// TestFrameLayoutStable pins a frame's bytes: nodes of two versions
// exchange them during a rolling upgrade (ID, aux, length, all big-endian,
// then the payload).
func TestFrameLayoutStable(t *testing.T) {
	got := fmt.Sprintf("%x", appendFrame(nil, frame{id: 0x0102030405060708, aux: 250, payload: []byte("entry")}))
	if want := "0102030405060708" + "000000fa" + "00000005" + "656e747279"; got != want {
		t.Errorf("frame encodes as %s, want %s", got, want)
	}
}
