package minkms

import (
	"encoding/json"
	"net/http"

	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/keep-kms/keep/internal/cluster"
)

// The fields of ServerStatusResponse that came after the pinned kms-go
// (spec upstream §11.5), and Keep's own: pinned clients keep them as
// unknown fields.
const (
	fieldHSMs           protowire.Number = 19   // HSMs that seal the root key, as the node's state has them (json "hsm")
	fieldConfiguredHSMs protowire.Number = 20   // HSMs the node is configured with (json "hsm_active")
	fieldUnsealedWith   protowire.Number = 7373 // Keep: the HSM the node unsealed with (json "unsealed_with")
)

// hsmFields encodes the HSM fields of a node's status.
func hsmFields(st cluster.NodeStatus) []byte {
	var b []byte
	for _, name := range st.HSMs {
		b = protowire.AppendTag(b, fieldHSMs, protowire.BytesType)
		b = protowire.AppendString(b, name)
	}
	for _, name := range st.ConfiguredHSMs {
		b = protowire.AppendTag(b, fieldConfiguredHSMs, protowire.BytesType)
		b = protowire.AppendString(b, name)
	}
	if st.HSM != "" {
		b = protowire.AppendTag(b, fieldUnsealedWith, protowire.BytesType)
		b = protowire.AppendString(b, st.HSM)
	}
	return b
}

// statusJSON is the JSON of a node's status: protojson drops unknown
// fields, so the HSM fields are added under their JSON names.
func statusJSON(msg *pb.ServerStatusResponse, st cluster.NodeStatus) ([]byte, error) {
	body, err := protojson.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	m["hsm"], m["hsm_active"], m["unsealed_with"] = nonNil(st.HSMs), nonNil(st.ConfiguredHSMs), st.HSM
	return json.Marshal(m)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// writeStatus sends a node's status, with its HSM fields, as protobuf or
// JSON by Accept.
func writeStatus(w http.ResponseWriter, r *http.Request, st cluster.NodeStatus) {
	msg := serverStatus(st)
	if wantsBinary(r) {
		writeMessage(w, r, msg)
		return
	}
	body, err := statusJSON(msg, st)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, contentTypeJSON, body)
}
