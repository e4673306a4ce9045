package minkms

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keep-kms/keep/internal/service"
)

// config serves /v1/config: GET shows this node's configuration (its config
// file, the cluster-wide settings, and the settings in effect), PUT changes
// cluster-wide settings on every node and replies as GET does (also to a
// caller that has just handed over admin.identity and may no longer GET).
// Both for SysAdmins only; the reply is JSON, or a protobuf Struct by
// Accept, as every other reply. The audit record of a PUT names the
// settings it changed and their new values.
func (a *API) config(w http.ResponseWriter, r *http.Request, c service.Caller) {
	var (
		cluster map[string]string
		err     error
	)
	if r.Method == http.MethodPut {
		var changes map[string]string
		if changes, err = settingChanges(r); err == nil {
			cluster, err = a.svc.SetSettings(r.Context(), c, changes)
		}
		// The audit record says what was changed, or what the caller
		// tried to change, never a secret (DescribeSettings).
		noteAudit(r, strings.TrimSpace("PUT "+service.DescribeSettings(changes, err == nil)))
	} else {
		cluster, err = a.svc.Settings(c)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	view := map[string]any{
		"node":      a.nodeConfig,
		"cluster":   cluster,
		"effective": a.effective(),
	}
	// A JSON round trip turns the view into the values a Struct holds.
	data, err := json.Marshal(view)
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(data, &m)
	}
	var st *structpb.Struct
	if err == nil {
		st, err = structpb.NewStruct(m)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeMessage(w, r, st)
}

// settingChanges decodes the body of PUT /v1/config: an object of setting
// names and values, as JSON, or as a protobuf Struct when sent as
// application/octet-stream.
func settingChanges(r *http.Request) (map[string]string, error) {
	body, err := readBody(r)
	if err != nil {
		return nil, err
	}
	changes := map[string]string{}
	if r.Header.Get("Content-Type") == contentTypeBinary {
		var st structpb.Struct
		if err := proto.Unmarshal(body, &st); err != nil {
			return nil, errors.Join(errMalformed, err)
		}
		for k, v := range st.GetFields() {
			s, ok := v.GetKind().(*structpb.Value_StringValue)
			if !ok {
				return nil, fmt.Errorf("%w: setting %q must be a string", errMalformed, k)
			}
			changes[k] = s.StringValue
		}
		return changes, nil
	}
	if err := json.Unmarshal(body, &changes); err != nil {
		return nil, fmt.Errorf("%w: expected a JSON object of setting names and string values: %v", errMalformed, err)
	}
	return changes, nil
}
