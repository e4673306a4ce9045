package minkms

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/minio/kms-go/kms/cmds"
	"google.golang.org/protobuf/proto"
)

// errMalformed marks a request body that is not a sequence of frames.
var errMalformed = errors.New("malformed request")

// frameHeaderLen is the size of a frame header: a uint16 command number and
// a uint32 payload length, both big-endian (spec §3.1).
const frameHeaderLen = 6

// frame is one command of a request: its number and protobuf payload and,
// once parsed, its handler and decoded message.
type frame struct {
	cmd     cmds.Command
	payload []byte
	handler command
	msg     proto.Message
}

// decodeFrames splits a request body into its frames. The payloads alias
// body.
func decodeFrames(body []byte) ([]frame, error) {
	if len(body) == 0 {
		return nil, fmt.Errorf("%w: empty body: expected at least one command", errMalformed)
	}
	var frames []frame
	for len(body) > 0 {
		if len(body) < frameHeaderLen {
			return nil, fmt.Errorf("%w: truncated command header (%d bytes)", errMalformed, len(body))
		}
		cmd := cmds.Command(binary.BigEndian.Uint16(body))
		n := binary.BigEndian.Uint32(body[2:])
		body = body[frameHeaderLen:]
		if uint64(n) > uint64(len(body)) {
			return nil, fmt.Errorf("%w: command %d claims %d bytes but %d remain", errMalformed, cmd, n, len(body))
		}
		frames = append(frames, frame{cmd: cmd, payload: body[:n:n]})
		body = body[n:]
	}
	return frames, nil
}
