// Package e2e runs the keep binary as a user would: it builds it once, starts
// real server processes on 127.0.0.x loopback addresses and talks to them with
// the official MinIO KMS client (github.com/minio/kms-go/kms), with raw HTTPS
// and with the keep CLI. Building, starting and stopping nodes and making
// clients for them is test/testnode's; this file holds what only these tests
// need: raw requests, frames and assertions.
//
// Set KEEP_BINARY to test a prebuilt binary instead of building ./cmd/keep.
package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/minio/kms-go/kms/cmds"

	"github.com/keep-kms/keep/test/testnode"
)

func TestMain(m *testing.M) { os.Exit(testnode.Main(m)) }

// ---------------------------------------------------------------------------
// Raw requests

type reply struct {
	Status int
	Header http.Header
	Body   []byte
	Proto  string
	Length int64 // resp.ContentLength
}

// do sends one raw request and reads the whole reply.
func do(t testing.TB, hc *http.Client, method, url string, body []byte, header map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = http.NoBody
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: buf.Bytes(), Proto: resp.Proto, Length: resp.ContentLength}
}

// ---------------------------------------------------------------------------
// Frames (spec §3.1)

type frame struct {
	Cmd     cmds.Command
	Payload []byte
}

func appendFrame(b []byte, cmd cmds.Command, payload []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(cmd))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func parseFrames(b []byte) ([]frame, error) {
	var fs []frame
	for len(b) > 0 {
		if len(b) < 6 {
			return fs, fmt.Errorf("frame header truncated: %d bytes left", len(b))
		}
		c := cmds.Command(binary.BigEndian.Uint16(b))
		l := binary.BigEndian.Uint32(b[2:])
		if uint64(len(b)-6) < uint64(l) {
			return fs, fmt.Errorf("frame %s: length %d > %d bytes left", c, l, len(b)-6)
		}
		fs = append(fs, frame{Cmd: c, Payload: b[6 : 6+l]})
		b = b[6+l:]
	}
	return fs, nil
}

// ---------------------------------------------------------------------------
// Assertions

// errIs fails the test unless err matches want exactly (status and message).
func errIs(t testing.TB, err error, want kms.Error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %s, want %d %q", what, testnode.DescribeErr(err), want.Code, want.Err)
	}
}

// errStatus fails the test unless err is a kms.Error with the given status.
func errStatus(t testing.TB, err error, status int, what string) {
	t.Helper()
	var e kms.Error
	if !errors.As(err, &e) || e.Code != status {
		t.Errorf("%s: got error %s, want HTTP status %d", what, testnode.DescribeErr(err), status)
	}
}

func noErr(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %s", what, testnode.DescribeErr(err))
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}
