package kes

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

const contentTypeJSON = "application/json"

// writeBody sends a complete reply with an explicit Content-Length (and
// no Content-Type for an empty body). Replies are never compressed.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// writeJSON sends v as JSON, as KES does: encoded with json.Encoder, so
// with a trailing newline.
func writeJSON(w http.ResponseWriter, v any) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		writeError(w, http.StatusInternalServerError, "internal server error")
		return
	}
	writeBody(w, http.StatusOK, contentTypeJSON, buf.Bytes())
}

// writeError sends an error in KES's shape (spec §3): {"message":<msg>\n}
// – the message encoded by json.Encoder inside a hand-built object.
func writeError(w http.ResponseWriter, status int, msg string) {
	var buf bytes.Buffer
	buf.WriteString(`{"message":`)
	json.NewEncoder(&buf).Encode(msg)
	buf.WriteString("}")
	writeBody(w, status, contentTypeJSON, buf.Bytes())
}
