package testnode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/kms-go/kms"
)

// KeyInfo is the reply of the key lifecycle routes, GET
// /v1/keys/{enclave}/{name} and the PUTs below it.
type KeyInfo struct {
	Enclave      string       `json:"enclave"`
	Name         string       `json:"name"`
	RotateEvery  string       `json:"rotate_every"`
	NextRotation *time.Time   `json:"next_rotation,omitempty"`
	Versions     []KeyVersion `json:"versions"`
}

// KeyVersion is one version of a KeyInfo.
type KeyVersion struct {
	Version   int        `json:"version"`
	Type      string     `json:"type"`
	State     string     `json:"state"`
	DeleteAt  *time.Time `json:"delete_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	Imported  bool       `json:"imported"`
	KES       bool       `json:"kes"`
}

// Version returns version n of k, or nil.
func (k *KeyInfo) Version(n int) *KeyVersion {
	for i := range k.Versions {
		if k.Versions[i].Version == n {
			return &k.Versions[i]
		}
	}
	return nil
}

// States returns "1:active 2:disabled …", the versions of k and their
// states in the order the server lists them, for test messages and
// comparisons.
func (k *KeyInfo) States() string {
	var s []string
	for _, v := range k.Versions {
		s = append(s, fmt.Sprintf("%d:%s", v.Version, v.State))
	}
	return strings.Join(s, " ")
}

// GetKeyInfo asks the node at endpoint (https://IP:PORT) for the KeyInfo
// of key name in enclave. An error reply is a kms.Error, so that
// StatusOf and errors.Is work on it.
func GetKeyInfo(ctx context.Context, hc *http.Client, endpoint, enclave, name string) (*KeyInfo, error) {
	return sendKeyRoute(ctx, hc, http.MethodGet, endpoint, enclave, name, "", nil)
}

// PutKeyRoute sends body as JSON to the key lifecycle route action
// ("delete", "cancel-delete", "disable", "enable", "rotation") of key name
// and returns the KeyInfo of the reply.
func PutKeyRoute(ctx context.Context, hc *http.Client, endpoint, enclave, name, action string, body any) (*KeyInfo, error) {
	return sendKeyRoute(ctx, hc, http.MethodPut, endpoint, enclave, name, action, body)
}

func sendKeyRoute(ctx context.Context, hc *http.Client, method, endpoint, enclave, name, action string, body any) (*KeyInfo, error) {
	u := strings.TrimSuffix(endpoint, "/") + "/v1/keys/" + url.PathEscape(enclave) + "/" + url.PathEscape(name)
	if action != "" {
		u += "/" + action
	}
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		return nil, kms.Error{Code: resp.StatusCode, Err: msg}
	}
	var k KeyInfo
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%s %s: reply is not a KeyInfo: %v: %s", method, u, err, data)
	}
	return &k, nil
}
