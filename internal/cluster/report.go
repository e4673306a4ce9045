package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/raft"
)

// Followers tell the leader how far they have applied the log, so that the
// leader can answer a write once every healthy follower serves it (see
// Node.Apply). Reports are frequent, so each follower sends them on one
// long-lived request to /v1/rpc/applied. A report is 16 bytes: the applied
// index and the report's send time, both big-endian; the send time is in
// nanoseconds since the follower started and means nothing to the leader.
// The leader answers each report it counts with an echo on the response,
// also 16 bytes: the report's send time and the leader's applied index.
// The echoes are the follower's lease (see lease.go).

// reportApplied streams this node's applied index to the leader after it
// applies entries, and every reportInterval when it applies none: a
// follower whose reports stop is one the leader stops waiting for, so an
// idle follower must keep reporting to count as healthy. Entries applied
// while a report is being written are covered by the next one. The stream
// is reopened when the leader changes or the stream breaks.
func (g *readGate) reportApplied() {
	var s *reportStream
	defer func() { s.close() }()
	tick := time.NewTicker(reportInterval)
	defer tick.Stop()
	for {
		select {
		case <-g.done:
			return
		case <-g.notify:
		case <-tick.C:
		}
		inst := g.current()
		if inst == nil {
			continue
		}
		leader, _ := inst.raft.LeaderWithID()
		// A follower that cannot write its log applies nothing new: it
		// stops reporting, so that the leader stops waiting for it
		// (after reportTTL) and its lease lapses.
		if inst.raft.State() != raft.Follower || leader == "" || inst.diskFault() != nil {
			s.close()
			s = nil
			continue
		}
		if s == nil || s.leader != string(leader) {
			s.close()
			s = g.openReportStream(string(leader), string(inst.id))
		}
		if err := s.send(g.appliedIndex(inst), time.Since(g.started)); err != nil {
			s.close()
			s = nil
		}
	}
}

// reportStream is the body of a follower's request to /v1/rpc/applied.
type reportStream struct {
	leader string
	w      *io.PipeWriter
	cancel context.CancelFunc
}

func (g *readGate) openReportStream(leader, id string) *reportStream {
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+leader+rpcApplied+"?node="+url.QueryEscape(id), r)
	if err == nil {
		go func() {
			res, err := g.transport.client.Do(req)
			if err == nil {
				err = g.readEchoes(leader, res.Body)
				res.Body.Close()
			}
			g.lease.drop(leader)
			r.CloseWithError(err) // the next send fails, and the stream is reopened
		}()
	} else {
		r.CloseWithError(err)
	}
	return &reportStream{leader: leader, w: w, cancel: cancel}
}

// readEchoes renews this follower's lease with every echo of the leader,
// until the stream ends; it always returns an error.
func (g *readGate) readEchoes(leader string, body io.Reader) error {
	var buf [16]byte
	for {
		if _, err := io.ReadFull(body, buf[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return err
		}
		sent := g.started.Add(time.Duration(binary.BigEndian.Uint64(buf[:8]))) // #nosec G115 -- a duration since the node started, sent by a peer node (mutual TLS); never near 2^63 ns
		g.lease.renew(leader, sent, binary.BigEndian.Uint64(buf[8:]))
	}
}

func (s *reportStream) send(index uint64, sent time.Duration) error {
	var buf [16]byte
	binary.BigEndian.PutUint64(buf[:8], index)
	binary.BigEndian.PutUint64(buf[8:], uint64(sent)) // #nosec G115 -- a duration since the node started: never negative
	_, err := s.w.Write(buf[:])
	return err
}

// close ends the stream; a nil stream is closed already.
func (s *reportStream) close() {
	if s != nil {
		s.w.Close()
		s.cancel()
	}
}

// serveApplied reads a follower's stream of applied indexes, until the
// follower ends it or this node shuts down.
func (g *readGate) serveApplied(w http.ResponseWriter, r *http.Request) {
	if !g.transport.IsNode(r) {
		writeRPC(w, http.StatusForbidden, errorResponse{Err: &rpcError{Message: "access denied: only cluster nodes may call " + rpcApplied}})
		return
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-g.done:
		case <-r.Context().Done():
		case <-done:
		}
		r.Body.Close() // ends the read below
	}()
	id := raft.ServerID(r.URL.Query().Get("node"))
	rc := http.NewResponseController(w)
	// The request body is the follower's stream of reports, which lasts as
	// long as the connection: the server's read deadline must not end it.
	rc.SetReadDeadline(time.Time{})
	var buf [16]byte
	var echoed time.Time
	for {
		if _, err := io.ReadFull(r.Body, buf[:]); err != nil {
			return
		}
		g.applied.update(id, binary.BigEndian.Uint64(buf[:8]))
		// Only a leader counts followers, so only a leader grants leases.
		// The applied index is read after the update: a write acknowledged
		// without waiting for this follower is applied here already.
		// Under load a follower reports after every batch it applies; one
		// echo per echoInterval keeps its lease alive just as well.
		inst := g.current()
		if inst.raft.State() != raft.Leader || time.Since(echoed) < echoInterval {
			continue
		}
		echoed = time.Now()
		copy(buf[:8], buf[8:])
		binary.BigEndian.PutUint64(buf[8:], g.appliedIndex(inst))
		if _, err := w.Write(buf[:]); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
