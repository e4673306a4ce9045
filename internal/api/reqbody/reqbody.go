// Package reqbody reads request bodies for both APIs, so that what a
// client may make the server hold is bounded by what it sent, not by what
// it announced.
package reqbody

import (
	"errors"
	"io"
	"net/http"
)

// initialSize bounds the first buffer Read allocates: a body of announced
// length up to it is read with one allocation (the common small command);
// a larger announced length is not believed, the buffer grows with the
// bytes that arrive.
const initialSize = 16 << 10

// ErrTooLarge is returned by Read when the body is larger than the limit.
var ErrTooLarge = errors.New("request body too large")

// Read reads a body of at most limit bytes. announced is the length the
// client announced (Content-Length; -1 when unknown): it sizes the first
// buffer only up to initialSize, so a client that announces 64 MiB and
// sends one byte costs the server what it sent. A body over limit is
// ErrTooLarge; any other failure is returned as it is.
func Read(body io.Reader, announced, limit int64) ([]byte, error) {
	size := int64(512)
	if announced >= 0 {
		size = min(announced+1, initialSize) // +1: room to see EOF without growing
	}
	size = min(size, limit+1)
	buf := make([]byte, 0, max(size, 1))
	for {
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return nil, ErrTooLarge
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, readError(err)
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow, as append does: by a factor
		}
	}
}

// readError maps a failed read to ErrTooLarge where http.MaxBytesReader
// cut the body. It is apart from Read's loop so that the common read, which
// ends in io.EOF, pays for no errors.As (its target escapes to the heap).
func readError(err error) error {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		return ErrTooLarge
	}
	return err
}

// Unread prepares the refusal of a request whose body is not read: over
// HTTP/1.x the server would read (and wait for) up to 256 KiB of it before
// sending the reply, so the connection is closed after the reply instead.
// HTTP/2 resets the stream without waiting.
func Unread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
}
