package reqbody

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/iotest"
)

// trickle is a body that arrives a few bytes at a time.
type trickle struct {
	data  []byte
	chunk int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), t.chunk)], t.data)
	t.data = t.data[n:]
	return n, nil
}

func TestRead(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100_000)
	tests := []struct {
		name      string
		body      []byte
		chunk     int
		announced int64
		limit     int64
		err       error
	}{
		{"empty", nil, 1, 0, 10, nil},
		{"small, length known", []byte("hello"), 5, 5, 10, nil},
		{"small, length unknown", []byte("hello"), 2, -1, 10, nil},
		{"exactly the limit", []byte("0123456789"), 3, 10, 10, nil},
		{"over the limit", []byte("0123456789a"), 3, -1, 10, ErrTooLarge},
		{"over the limit, announced under it", []byte("0123456789a"), 11, 3, 10, ErrTooLarge},
		{"announced far more than sent", []byte("a"), 1, 64 << 20, 64 << 20, nil},
		{"large, trickled", big, 1000, int64(len(big)), 1 << 20, nil},
		{"large, unknown length", big, 4096, -1, 1 << 20, nil},
		{"limit zero, empty", nil, 1, -1, 0, nil},
		{"limit zero, one byte", []byte("a"), 1, -1, 0, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(&trickle{data: tt.body, chunk: tt.chunk}, tt.announced, tt.limit)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(got, tt.body) {
				t.Fatalf("read %d bytes, want %d", len(got), len(tt.body))
			}
			if c := cap(got); c > 2*len(got)+initialSize {
				t.Errorf("buffer of %d bytes for a %d-byte body", c, len(got))
			}
		})
	}
}

func TestReadError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := Read(iotest.ErrReader(boom), -1, 10); !errors.Is(err, boom) {
		t.Errorf("err = %v, want %v", err, boom)
	}
	w := httptest.NewRecorder()
	mb := http.MaxBytesReader(w, io.NopCloser(bytes.NewReader(make([]byte, 20))), 10)
	if _, err := Read(mb, 20, 100); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxBytesReader over its limit: err = %v, want ErrTooLarge", err)
	}
}

func TestUnread(t *testing.T) {
	tests := []struct {
		proto  int
		length int64
		close  bool
	}{{1, 10, true}, {1, -1, true}, {1, 0, false}, {2, 10, false}}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.ProtoMajor, r.ContentLength = tt.proto, tt.length
		w := httptest.NewRecorder()
		Unread(w, r)
		if got := w.Header().Get("Connection") == "close"; got != tt.close {
			t.Errorf("HTTP/%d, length %d: Connection: close = %v, want %v", tt.proto, tt.length, got, tt.close)
		}
	}
}

// FuzzRead checks that Read returns exactly the body, or ErrTooLarge when
// it is over the limit, whatever length is announced and however the body
// arrives, and that its buffer grows with the bytes received.
func FuzzRead(f *testing.F) {
	f.Add([]byte("hello"), int64(5), int64(10), 1)
	f.Add([]byte{}, int64(64<<20), int64(64<<20), 1)
	f.Add([]byte("0123456789abcdef"), int64(-1), int64(8), 3)
	f.Add(bytes.Repeat([]byte{0}, 40000), int64(1), int64(50000), 7000)
	f.Fuzz(func(t *testing.T, body []byte, announced, limit int64, chunk int) {
		if limit < 0 || limit > 1<<20 || chunk <= 0 {
			t.Skip()
		}
		got, err := Read(&trickle{data: body, chunk: chunk}, announced, limit)
		if int64(len(body)) > limit {
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%d-byte body over limit %d: err = %v", len(body), limit, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("err = %v", err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("read %d bytes, want %d", len(got), len(body))
		}
		if c := cap(got); c > 2*len(got)+initialSize+1 {
			t.Fatalf("buffer of %d bytes for a %d-byte body announced as %d", c, len(got), announced)
		}
	})
}
