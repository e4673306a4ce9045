package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// A frame is one message on a connection that carries many requests at
// once (see forward.go): a 16-byte header, then the payload. The header
// holds the request ID, which matches a reply to its request, a field
// whose meaning depends on the message, and the payload length, all
// big-endian.
type frame struct {
	id      uint64
	aux     uint32
	payload []byte
}

const frameHeaderSize = 16

// errFrameTooLarge is the error for a frame whose payload exceeds the limit.
var errFrameTooLarge = errors.New("frame too large")

// appendFrame appends the encoding of f to dst.
func appendFrame(dst []byte, f frame) []byte {
	dst = binary.BigEndian.AppendUint64(dst, f.id)
	dst = binary.BigEndian.AppendUint32(dst, f.aux)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.payload))) // #nosec G115 -- a forwarded entry is bounded by the request body limits, far below 4 GiB
	return append(dst, f.payload...)
}

// readFrame reads one frame from r. A payload longer than limit is an
// error; the connection cannot go on after it.
func readFrame(r *bufio.Reader, limit uint32) (frame, error) {
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, err
	}
	f := frame{id: binary.BigEndian.Uint64(h[:8]), aux: binary.BigEndian.Uint32(h[8:12])}
	size := binary.BigEndian.Uint32(h[12:])
	if size > limit {
		return frame{}, fmt.Errorf("%w: %d bytes, at most %d", errFrameTooLarge, size, limit)
	}
	f.payload = make([]byte, size)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return frame{}, unexpectedEOF(err)
	}
	return f, nil
}

// unexpectedEOF turns an EOF in the middle of a frame into the error it is.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// frameWriter writes frames to a connection from one goroutine, and the
// frames that queue up while a write is under way go out together in the
// next one: under load, one TLS record and one syscall carry many frames,
// where a request per HTTP/2 stream costs a flush each.
type frameWriter struct {
	frames    chan []byte   // unbuffered: a frame handed over is being written
	broken    chan struct{} // closed when the connection fails
	closeOnce sync.Once
	err       error // why the connection failed; read after broken is closed
}

func newFrameWriter() *frameWriter {
	return &frameWriter{frames: make(chan []byte), broken: make(chan struct{})}
}

// maxWriteBatch bounds the bytes gathered into one write.
const maxWriteBatch = 256 << 10

// run writes frames to c until a write fails or the writer is closed.
func (w *frameWriter) run(c net.Conn) {
	var buf []byte
	for {
		select {
		case f := <-w.frames:
			if len(f) >= maxWriteBatch {
				// A large frame (a restore, hundreds of MB) goes out
				// as it is, not copied.
				if _, err := c.Write(f); err != nil {
					w.close(err)
					return
				}
				continue
			}
			buf = append(buf[:0], f...)
		case <-w.broken:
			return
		}
	gather:
		for len(buf) < maxWriteBatch {
			select {
			case f := <-w.frames:
				buf = append(buf, f...)
			default:
				break gather
			}
		}
		if _, err := c.Write(buf); err != nil {
			w.close(err)
			return
		}
		if cap(buf) > maxWriteBatch {
			buf = nil // a large frame (a restore) is not kept around
		}
	}
}

// write hands f to the writer. It fails with errNotSent if the connection
// failed first, in which case no byte of f was written.
func (w *frameWriter) write(f []byte) error {
	select {
	case w.frames <- f:
		return nil
	case <-w.broken:
		return fmt.Errorf("%w: %w", errNotSent, w.err)
	}
}

// close marks the connection failed with err; the first call counts.
func (w *frameWriter) close(err error) {
	w.closeOnce.Do(func() {
		w.err = err
		close(w.broken)
	})
}
