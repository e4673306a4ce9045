package audit

import (
	"os"
	"sync"
)

// NewFile returns a Log that appends to the file at path. If the file
// cannot be opened now, the log starts out unavailable (requests are
// refused unless failOpen) and tries again with every event, so that it
// recovers once the file can be written.
func NewFile(path string, failOpen bool) *Log {
	sink := &fileSink{path: path}
	l := New(sink, failOpen)
	l.broken = sink.open()
	return l
}

// fileSink appends to a file, opening it on first use and again after a
// failed write.
type fileSink struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (s *fileSink) open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.openLocked()
}

func (s *fileSink) openLocked() error {
	if s.f != nil {
		return nil
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	s.f = f
	return nil
}

func (s *fileSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.openLocked(); err != nil {
		return 0, err
	}
	n, err := s.f.Write(b)
	if err != nil {
		s.f.Close()
		s.f = nil
	}
	return n, err
}

// Close closes the file, if the sink is a file.
func (l *Log) Close() error {
	s, ok := l.sink.(*fileSink)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}
