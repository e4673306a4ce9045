package cli

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestNodeCommandUsage(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		message string
	}{
		{[]string{"config", "set"}, "missing argument"},
		{[]string{"config", "set", "log.level"}, `invalid setting "log.level": expected KEY=VALUE`},
		{[]string{"config", "set", "=debug"}, "expected KEY=VALUE"},
		{[]string{"config", "set", "audit=on", "audit=off"}, "setting audit given twice"},
		{[]string{"config", "get", "a", "b"}, "too many arguments"},
		{[]string{"config", "get", "host:99999"}, "the port must be a number"},
		{[]string{"logs", "bad/host"}, "invalid HOST[:PORT]"},
		{[]string{"pprof"}, "missing argument"},
		{[]string{"pprof", "host", "--duration", "0s"}, "--duration must be positive"},
		{[]string{"pprof", "host", "--block", "-1"}, "must not be negative"},
	} {
		_, stderr, code := runCLI(t, nil, "", tc.args...)
		if code != ExitUsage || !strings.Contains(stderr, tc.message) {
			t.Errorf("keep %s: exit %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), code, stderr, ExitUsage, tc.message)
		}
	}
}

// logStream encodes records as /v1/debug/log sends them.
func logStream(t *testing.T, records ...*pb.LogRecord) io.Reader {
	t.Helper()
	var b []byte
	for _, r := range records {
		data, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	return bytes.NewReader(b)
}

func TestStreamLogs(t *testing.T) {
	at := timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	server := &pb.LogRecord{Level: -4, Time: at, Message: "time=… level=DEBUG msg=request path=/v1/kms",
		Req: &pb.LogRecord_Request{Method: "POST", Path: "/v1/kms", IP: "127.0.0.1"}}
	audit := &pb.LogRecord{Time: at, Message: "KEY:GENERATE minio my-key 200 52µs",
		Req: &pb.LogRecord_Request{Method: "minkms", Path: "KEY:GENERATE", Identity: "h1:abc", IP: "0.0.0.0"}}
	for _, tc := range []struct {
		rec         *pb.LogRecord
		audit, json bool
		want        string
	}{
		{server, false, false, "time=… level=DEBUG msg=request path=/v1/kms\n"},
		{server, false, true, `{"time":"2025-01-02T03:04:05Z","level":"DEBUG","message":"time=… level=DEBUG msg=request path=/v1/kms","method":"POST","path":"/v1/kms","ip":"127.0.0.1"}` + "\n"},
		{audit, true, true, `{"time":"2025-01-02T03:04:05Z","message":"KEY:GENERATE minio my-key 200 52µs","api":"minkms","command":"KEY:GENERATE","identity":"h1:abc"}` + "\n"},
		{audit, true, false, "minkms h1:abc 0.0.0.0 KEY:GENERATE minio my-key 200 52µs\n"},
	} {
		var out bytes.Buffer
		err := streamLogs(logStream(t, tc.rec, tc.rec), &out, tc.audit, tc.json)
		if !errors.Is(err, io.EOF) {
			t.Errorf("streamLogs: %v at the end of the stream, want io.EOF", err)
		}
		if got := out.String(); !strings.HasSuffix(got, tc.want) || strings.Count(got, "\n") != 2 {
			t.Errorf("streamLogs (audit %v, json %v):\n%s\nwant two lines ending in\n%s", tc.audit, tc.json, got, tc.want)
		}
	}

	// A record larger than the spec allows is an error, not a crash.
	var b []byte
	b = binary.BigEndian.AppendUint32(b, maxLogRecord+1)
	if err := streamLogs(bytes.NewReader(b), io.Discard, false, false); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("streamLogs of an oversized record: %v", err)
	}
}
