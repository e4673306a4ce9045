package minkms

import (
	"encoding/binary"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/logging"
	"github.com/keep-kms/keep/internal/profile"
	"github.com/keep-kms/keep/internal/service"
)

// pprof serves /v1/debug/pprof, for SysAdmins (declared in routes.go):
// POST starts profiling, GET reports what is
// profiled, DELETE stops and returns a TAR of pprof files.
func (a *API) pprof(w http.ResponseWriter, r *http.Request, _ service.Caller) {
	switch r.Method {
	case http.MethodPost:
		opts, err := profileOptions(r)
		if err == nil {
			err = a.profiler.Start(opts)
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeBody(w, http.StatusOK, contentTypeJSON, []byte("{}"))
	case http.MethodGet:
		st, ok := a.profiler.Status()
		if !ok {
			writeError(w, r, profile.ErrNotRunning)
			return
		}
		writeMessage(w, r, &pb.ProfileStatusResponse{
			Started:       timestamppb.New(st.Started),
			CPU:           st.CPU,
			Heap:          st.Heap,
			Goroutine:     st.Goroutine,
			Thread:        st.Thread,
			BlockRate:     uint32(st.BlockRate),     // #nosec G115 -- the profiler's rates are small positive numbers set by this node
			MutexFraction: uint32(st.MutexFraction), // #nosec G115 -- the profiler's rates are small positive numbers set by this node
		})
	default:
		data, err := a.profiler.Stop()
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeBody(w, http.StatusOK, "application/x-tar", data)
	}
}

func profileOptions(r *http.Request) (profile.Options, error) {
	q := r.URL.Query()
	opts := profile.Options{CPU: q.Get("cpu") == "true", Heap: q.Get("heap") == "true"}
	switch q.Get("thread") {
	case "":
	case "all":
		opts.Goroutine, opts.Thread = true, true
	case "runtime":
		opts.Goroutine = true
	case "os":
		opts.Thread = true
	default:
		return opts, errors.Join(errMalformed, errors.New("thread must be all, runtime or os"))
	}
	var err error
	if s := q.Get("block"); s != "" {
		if opts.BlockRate, err = strconv.Atoi(s); err != nil || opts.BlockRate < 0 {
			return opts, errors.Join(errMalformed, errors.New("block must be a number of nanoseconds"))
		}
	}
	if s := q.Get("mutex"); s != "" {
		if opts.MutexFraction, err = strconv.Atoi(s); err != nil || opts.MutexFraction < 0 {
			return opts, errors.Join(errMalformed, errors.New("mutex must be a positive number"))
		}
	}
	return opts, nil
}

// maxLogRecord is the largest record the client reads (spec §2.7).
const maxLogRecord = 4096

// log serves POST /v1/debug/log, for SysAdmins (declared in routes.go):
// the server log (or, with ?audit, the
// audit log) as a stream of length-prefixed protobuf LogRecords, filtered
// by the LogRequest in the body, until the client goes away.
func (a *API) log(w http.ResponseWriter, r *http.Request, _ service.Caller) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var req pb.LogRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		writeError(w, r, errors.Join(errMalformed, err))
		return
	}
	f := logFilter{req: &req}

	w.Header().Set("Content-Type", contentTypeBinary)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// The request has been read: the server's read deadline must not end
	// the stream (over HTTP/1.1 it would cancel the request's context).
	rc.SetReadDeadline(time.Time{})
	rc.Flush()
	send := func(rec *pb.LogRecord) bool {
		if !f.match(rec) {
			return true
		}
		data, err := proto.Marshal(rec)
		if err != nil || len(data) > maxLogRecord {
			return true
		}
		frame := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(data)), uint32(len(data))) // #nosec G115 -- data is at most maxLogRecord bytes (checked above)
		if _, err := w.Write(append(frame, data...)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}

	if r.URL.Query().Has("audit") {
		events, cancel := a.audit.Subscribe(256)
		defer cancel()
		for {
			select {
			case <-r.Context().Done():
				return
			case e := <-events:
				if !send(auditRecord(e)) {
					return
				}
			}
		}
	}
	since := time.Time{}
	if req.Since != nil {
		since = req.Since.AsTime()
	}
	past, records, cancel := a.logs.Subscribe(256, since)
	defer cancel()
	for i := range past {
		if !send(logRecord(&past[i])) {
			return
		}
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case rec := <-records:
			if !send(logRecord(&rec)) {
				return
			}
		}
	}
}

// logRecord is a server log record on the wire. The pinned client needs a
// request with a valid IP in every record.
func logRecord(rec *logging.Record) *pb.LogRecord {
	req := &pb.LogRecord_Request{
		Method:   rec.Attrs["method"],
		Path:     rec.Attrs["path"],
		Identity: rec.Attrs["identity"],
		IP:       rec.Attrs["ip"],
	}
	if req.IP == "" {
		req.IP = "0.0.0.0"
	}
	return &pb.LogRecord{Level: int32(rec.Level), Time: timestamppb.New(rec.Time), Message: rec.Text, Req: req} // #nosec G115 -- slog levels are small integers (-4 to 8)
}

// auditRecord is an audit event on the wire.
func auditRecord(e audit.Event) *pb.LogRecord {
	msg := e.Command
	for _, s := range []string{e.Enclave, e.Resource, strconv.Itoa(e.Status), e.Latency.String(), e.Error} {
		if s != "" {
			msg += " " + s
		}
	}
	ip := e.IP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return &pb.LogRecord{
		Time:    timestamppb.New(e.Time),
		Message: msg,
		Req:     &pb.LogRecord_Request{Method: e.API, Path: e.Command, Identity: e.Identity, IP: ip},
	}
}

// logFilter selects the records a LogRequest asks for.
type logFilter struct{ req *pb.LogRequest }

func (f logFilter) match(rec *pb.LogRecord) bool {
	q := f.req
	if rec.Level < q.Level ||
		!strings.Contains(rec.Message, q.Message) ||
		(q.Method != "" && q.Method != rec.Req.GetMethod()) ||
		(q.Path != "" && !strings.HasPrefix(rec.Req.GetPath(), q.Path)) ||
		(q.Identity != "" && q.Identity != rec.Req.GetIdentity()) ||
		(q.IP != "" && q.IP != rec.Req.GetIP()) {
		return false
	}
	return true
}
