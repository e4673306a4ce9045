package minkms

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"

	pb "github.com/minio/kms-go/kms/protobuf"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Content types. The client decodes a reply as protobuf exactly when its
// Content-Type is application/octet-stream, and as JSON otherwise.
const (
	contentTypeBinary = "application/octet-stream"
	contentTypeJSON   = "application/json"
)

// contentTypes are the header values of the common content types.
var contentTypes = map[string][]string{
	contentTypeBinary: {contentTypeBinary},
	contentTypeJSON:   {contentTypeJSON},
}

// wantsBinary reports whether the client asked for protobuf replies.
func wantsBinary(r *http.Request) bool {
	return r.Header.Get("Accept") == contentTypeBinary
}

// writeBody sends a complete reply. The explicit Content-Length is part of
// the contract: the client sizes its buffer from it and fails without it.
// Replies are never compressed.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	if v, ok := contentTypes[contentType]; ok {
		h["Content-Type"] = v // shared, read-only: saves an allocation per reply
	} else {
		h.Set("Content-Type", contentType)
	}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

// writeJSON sends v as the JSON body of a 200 reply: the replies of Keep's
// own routes, which no protobuf message describes.
func writeJSON(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, contentTypeJSON, body)
}

// writeMessage sends a protobuf message, as JSON or protobuf by Accept.
func writeMessage(w http.ResponseWriter, r *http.Request, msg proto.Message) {
	if wantsBinary(r) {
		body, err := proto.Marshal(msg)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeBody(w, http.StatusOK, contentTypeBinary, body)
		return
	}
	body, err := protojson.Marshal(msg)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, contentTypeJSON, body)
}

// writeError sends err in the shape every client understands:
// {"message": …} as JSON, or an ErrResponse as protobuf by Accept.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := statusOf(err)
	if status == http.StatusInternalServerError {
		slog.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if wantsBinary(r) {
		body, _ := proto.Marshal(&pb.ErrResponse{Message: msg})
		writeBody(w, status, contentTypeBinary, body)
		return
	}
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	writeBody(w, status, contentTypeJSON, body)
}
