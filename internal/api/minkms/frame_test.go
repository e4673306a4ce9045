package minkms

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/minio/kms-go/kms/cmds"
)

func frameBytes(cmd uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, cmd)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

func TestDecodeFrames(t *testing.T) {
	twoStatus := append(frameBytes(204, []byte{0x0a, 0x01, 'a'}), frameBytes(204, []byte{0x0a, 0x01, 'b'})...)
	tests := []struct {
		name    string
		body    []byte
		want    []frame
		wantErr bool
	}{
		{"empty", nil, nil, true},
		{"short header", []byte{0, 3, 0}, nil, true},
		{"cluster status", frameBytes(3, nil), []frame{{cmd: cmds.ClusterStatus, payload: []byte{}}}, false},
		{"two frames", twoStatus, []frame{{cmd: cmds.KeyStatus, payload: []byte{0x0a, 0x01, 'a'}}, {cmd: cmds.KeyStatus, payload: []byte{0x0a, 0x01, 'b'}}}, false},
		{"length beyond body", append(frameBytes(204, nil)[:2], 0, 0, 0, 9, 1), nil, true},
		{"trailing garbage", append(frameBytes(3, nil), 1, 2), nil, true},
		{"huge length", []byte{0, 204, 0xff, 0xff, 0xff, 0xff}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeFrames(tt.body)
			if tt.wantErr {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("got %v, want a malformed-request error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d frames, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i].cmd != tt.want[i].cmd || !bytes.Equal(got[i].payload, tt.want[i].payload) {
					t.Fatalf("frame %d = %d %x, want %d %x", i, got[i].cmd, got[i].payload, tt.want[i].cmd, tt.want[i].payload)
				}
			}
		})
	}
}

func TestParseBatch(t *testing.T) {
	create := frameBytes(uint16(cmds.KeyCreate), []byte{0x0a, 0x01, 'k'})
	status := frameBytes(uint16(cmds.KeyStatus), []byte{0x0a, 0x01, 'k'})
	list := frameBytes(uint16(cmds.KeyList), nil)
	tests := []struct {
		name string
		body []byte
		err  error // nil: parsed
	}{
		{"one write", create, nil},
		{"reads", append(bytes.Clone(status), status...), nil},
		{"write and read", append(bytes.Clone(create), status...), errMalformed},
		{"two writes", append(bytes.Clone(create), create...), errMalformed},
		{"unknown command", frameBytes(999, nil), errMalformed},
		{"invalid protobuf", frameBytes(uint16(cmds.KeyStatus), []byte{0x0a, 0x05, 'k'}), errMalformed},
		{"one list", list, nil},
		{"two lists", append(bytes.Clone(list), list...), errMalformed},
		{"list and read", append(bytes.Clone(status), list...), errMalformed},
		{"as many reads as allowed", bytes.Repeat(status, MaxBatchCommands), nil},
		{"one read too many", bytes.Repeat(status, MaxBatchCommands+1), errBatchTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseBatch(tt.body)
			if tt.err == nil && err != nil || !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
}

// FuzzParseBatch feeds arbitrary bodies to the request decoder: it must
// either decode them within the batch limits or say they are malformed or
// too large, and never panic.
func FuzzParseBatch(f *testing.F) {
	f.Add(frameBytes(uint16(cmds.KeyGenerate), []byte{0x0a, 0x01, 'k', 0x20, 0x20}))
	f.Add(frameBytes(uint16(cmds.ClusterStatus), nil))
	f.Add(append(frameBytes(uint16(cmds.KeyStatus), []byte{0x0a, 0x01, 'a'}), frameBytes(uint16(cmds.KeyStatus), []byte{0x0a, 0x01, 'b'})...))
	f.Add([]byte{0, 204, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{})
	f.Add(append(frameBytes(uint16(cmds.KeyList), nil), frameBytes(uint16(cmds.KeyList), nil)...))
	f.Fuzz(func(t *testing.T, body []byte) {
		frames, err := parseBatch(body)
		if err != nil {
			if !errors.Is(err, errMalformed) && !errors.Is(err, errBatchTooLarge) {
				t.Fatalf("error %v is not a malformed-request or batch-too-large error", err)
			}
			return
		}
		if len(frames) == 0 || len(frames) > MaxBatchCommands {
			t.Fatalf("decoded %d commands", len(frames))
		}
		for _, f := range frames {
			if f.msg == nil || f.handler.run == nil {
				t.Fatalf("command %d decoded without message or handler", f.cmd)
			}
		}
	})
}
