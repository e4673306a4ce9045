package minkms

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/minio/kms-go/kms/cmds"
	"google.golang.org/protobuf/proto"

	"github.com/keep-kms/keep/internal/audit"
	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// command is the server side of one command number: how to decode its
// request and what to do with it. run returns nil for commands that answer
// with no message.
type command struct {
	decode func([]byte) (proto.Message, error)
	run    func(ctx context.Context, a *API, c service.Caller, enclave string, req proto.Message) (proto.Message, error)
}

// handle makes a command from a function of its typed request.
func handle[Req any, P interface {
	*Req
	proto.Message
}](run func(ctx context.Context, a *API, c service.Caller, enclave string, req P) (proto.Message, error)) command {
	return command{
		decode: func(b []byte) (proto.Message, error) {
			var m Req
			p := P(&m)
			if err := proto.Unmarshal(b, p); err != nil {
				return nil, err
			}
			return p, nil
		},
		run: func(ctx context.Context, a *API, c service.Caller, enclave string, req proto.Message) (proto.Message, error) {
			return run(ctx, a, c, enclave, req.(P))
		},
	}
}

// parseBatch decodes every frame of a body and its message. A batch is
// either read commands only, or exactly one write: a write that failed
// halfway through a batch would leave the others done, and the client
// never sends such batches.
//
// A batch holds at most MaxBatchCommands commands, and list commands, whose
// replies are pages of up to thousands of entries, are sent alone too (the
// client never batches them): a few bytes of KEY:LIST must not become
// megabytes of reply.
func parseBatch(body []byte) ([]frame, error) {
	frames, err := decodeFrames(body)
	if err != nil {
		return nil, err
	}
	if len(frames) > MaxBatchCommands {
		return nil, fmt.Errorf("%w: %d commands, at most %d per request", errBatchTooLarge, len(frames), MaxBatchCommands)
	}
	for i := range frames {
		f := &frames[i]
		c, ok := commands[f.cmd]
		if !ok {
			return nil, fmt.Errorf("%w: unknown command %d", errMalformed, f.cmd)
		}
		if (f.cmd.IsWrite() || service.IsListCommand(f.cmd)) && len(frames) > 1 {
			return nil, fmt.Errorf("%w: %s must be sent alone, not in a batch of %d commands", errMalformed, commandName(f.cmd), len(frames))
		}
		if f.msg, err = c.decode(f.payload); err != nil {
			return nil, fmt.Errorf("%w: invalid %s arguments: %v", errMalformed, f.cmd, err)
		}
		f.handler = c
	}
	return frames, nil
}

// replyFrameSize is a guess of the size of one reply frame, so that the
// reply of a batch is allocated once.
const replyFrameSize = 128

// command serves POST /v1/kms[/{enclave}]: it runs every command of the
// batch and answers with one frame per command, in order. If any command
// fails, the whole request fails with that error and no results.
func (a *API) command(w http.ResponseWriter, r *http.Request, c service.Caller) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	frames, err := parseBatch(body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := a.audit.Ready(); err != nil {
		writeError(w, r, err)
		return
	}
	caller, enclave := c, r.PathValue("enclave")

	var (
		reply  = make([]byte, 0, replyFrameSize*len(frames))
		failed error
		one    [1]audit.Event // the events of the common single command, without an allocation
		events = one[:0]
	)
	received := time.Now().UTC() // the time of every record of the batch
	for _, f := range frames {
		start := time.Now()
		resp, err := f.handler.run(r.Context(), a, caller, enclave, f.msg)
		if err == nil {
			reply, err = cmds.EncodePB(reply, f.cmd, resp)
		}
		if err == nil && len(reply) > MaxBatchReply {
			err = fmt.Errorf("%w: the reply exceeds %d bytes after %d of %d commands; send fewer commands per request", errBatchTooLarge, MaxBatchReply, len(events)+1, len(frames))
		}
		events = append(events, a.event(r, caller, enclave, f.cmd, f.msg, received, start, err))
		if err != nil {
			failed = err
			break
		}
	}
	// The record is written before the reply: a request whose record cannot
	// be written is refused.
	if err := a.audit.Record(events...); err != nil {
		failed = err
	}
	if failed != nil {
		writeError(w, r, failed)
		return
	}
	writeBody(w, http.StatusOK, contentTypeBinary, reply)
}

// event is the audit record of one command of a request received at the
// given time, which started at start.
func (a *API) event(r *http.Request, c service.Caller, enclave string, cmd cmds.Command, msg proto.Message, received, start time.Time, err error) audit.Event {
	e := audit.Event{
		Time:     received,
		Node:     a.host,
		Identity: c.Identity,
		IP:       remoteIP(r),
		API:      "minkms",
		Command:  commandName(cmd),
		Enclave:  enclave,
		Resource: resourceOf(msg),
		Status:   http.StatusOK,
		Latency:  time.Since(start),
	}
	if err != nil {
		e.Status, e.Error = statusOf(err)
	}
	return e
}

// commandName is the name of a command in audit records: as policies name
// it. The pinned kms-go names every command but KEY:IMPORT, which it spells
// !INVALID:203.
func commandName(cmd cmds.Command) string {
	switch cmd {
	case service.KeyMAC:
		return service.CommandKeyMAC
	case service.ClusterAddHSM:
		return service.CommandClusterAddHSM
	case service.ClusterRemoveHSM:
		return service.CommandClusterRemoveHSM
	}
	return state.RuleText(cmd)
}

// resourceOf is the name a command acts on: a key, policy, enclave,
// identity or node.
func resourceOf(msg proto.Message) string {
	switch m := msg.(type) {
	case interface{ GetName() string }:
		return m.GetName()
	case interface{ GetIdentity() string }:
		return m.GetIdentity()
	case interface{ GetHost() string }:
		return m.GetHost()
	}
	return ""
}
