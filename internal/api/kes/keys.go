package kes

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/keep-kms/keep/internal/crypto"
	"github.com/keep-kms/keep/internal/identity"
	"github.com/keep-kms/keep/internal/state"
)

// dekLength is the length of the data keys KES generates.
const dekLength = 32

// keyName is the key a request names, if it is a valid KES name.
func keyName(r *request) (string, error) {
	if !validName(r.resource) {
		return "", errKeyName(r.resource)
	}
	return r.resource, nil
}

// decodeBody reads a JSON body into v. With optional, an empty body is
// no arguments (generate without context).
func decodeBody(r *request, v any, optional bool, bad *requestError) error {
	body, err := readBody(r, bad)
	if err != nil {
		return err
	}
	if optional && len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if json.Unmarshal(body, v) != nil {
		return bad
	}
	return nil
}

// createKey serves PUT /v1/key/create/{name}: a new AES256 key.
func (a *API) createKey(r *request) (any, error) {
	name, err := keyName(r)
	if err != nil {
		return nil, err
	}
	return nil, a.svc.CreateKey(r.Context(), r.caller, a.enclave, name, string(crypto.AES256), false)
}

// importKey serves PUT /v1/key/import/{name} {"key","cipher"}.
func (a *API) importKey(r *request) (any, error) {
	name, err := keyName(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Key    []byte `json:"key"`
		Cipher string `json:"cipher"`
	}
	if err := decodeBody(r, &req, false, errImportBody); err != nil {
		return nil, err
	}
	var t crypto.KeyType
	switch req.Cipher {
	case "AES256", "AES256-GCM_SHA256":
		t = crypto.AES256
	case "ChaCha20", "XCHACHA20-POLY1305":
		t = crypto.ChaCha20
	default:
		return nil, errAlgorithm(req.Cipher)
	}
	if len(req.Key) != crypto.KeySize {
		return nil, errKeySize(req.Cipher)
	}
	return nil, a.svc.ImportKey(r.Context(), r.caller, a.enclave, name, string(t), req.Key)
}

// keyInfo is the reply of /v1/key/describe.
type keyInfo struct {
	Name      string    `json:"name"`
	Algorithm string    `json:"algorithm,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
}

// describeKey serves GET /v1/key/describe/{name}: the latest version.
func (a *API) describeKey(r *request) (any, error) {
	name, err := keyName(r)
	if err != nil {
		return nil, err
	}
	k, err := a.svc.KeyStatus(r.caller, a.enclave, name, 0)
	if err != nil {
		return nil, err
	}
	return keyInfo{Name: k.Name, Algorithm: string(k.Type()), CreatedAt: k.CreatedAt, CreatedBy: identity.Hex(k.CreatedBy)}, nil
}

// listKeys serves GET /v1/key/list/{pattern}: every matching name at once.
// The client feeds continue_at back as the next prefix, which would skip
// or repeat names, so there is no next page.
func (a *API) listKeys(r *request) (any, error) {
	if !validPattern(r.resource) {
		return nil, errPattern(r.resource)
	}
	names, err := listAll(func(continueAt string) ([]state.KeyVersion, string, error) {
		return a.svc.ListKeys(r.caller, a.enclave, listPrefix(r.resource), continueAt, state.MaxPageSize)
	}, func(k state.KeyVersion) string { return k.Name })
	if err != nil {
		return nil, err
	}
	return struct {
		Names []string `json:"names"`
	}{names}, nil
}

// listAll collects the names of every page of a list.
func listAll[T any](page func(continueAt string) ([]T, string, error), name func(T) string) ([]string, error) {
	names := []string{}
	continueAt := ""
	for {
		list, next, err := page(continueAt)
		if err != nil {
			return nil, err
		}
		for _, v := range list {
			names = append(names, name(v))
		}
		if next == "" || next == continueAt {
			return names, nil
		}
		continueAt = next
	}
}

// deleteKey serves DELETE /v1/key/delete/{name}: every version.
func (a *API) deleteKey(r *request) (any, error) {
	name, err := keyName(r)
	if err != nil {
		return nil, err
	}
	return nil, a.svc.DeleteKey(r.Context(), r.caller, a.enclave, name, 0, true)
}

// generateKey serves PUT /v1/key/generate/{name} {"context"}: a 32-byte
// data key, in plaintext and encrypted with the key, context bound as
// associated data. The body is optional.
func (a *API) generateKey(r *request) (any, error) {
	name, err := keyName(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Context []byte `json:"context"`
	}
	if err := decodeBody(r, &req, true, errBody); err != nil {
		return nil, err
	}
	_, plaintext, ciphertext, err := a.svc.GenerateKey(r.caller, a.enclave, name, 0, req.Context, dekLength)
	if err != nil {
		return nil, err
	}
	return struct {
		Plaintext  []byte `json:"plaintext"`
		Ciphertext []byte `json:"ciphertext"`
	}{plaintext, ciphertext}, nil
}

// encrypt serves PUT /v1/key/encrypt/{name} {"plaintext","context"}.
func (a *API) encrypt(r *request) (any, error) {
	name, err := keyName(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Plaintext []byte `json:"plaintext"`
		Context   []byte `json:"context"`
	}
	if err := decodeBody(r, &req, false, errBody); err != nil {
		return nil, err
	}
	_, ciphertext, err := a.svc.Encrypt(r.caller, a.enclave, name, 0, req.Plaintext, req.Context)
	if err != nil {
		return nil, err
	}
	return struct {
		Ciphertext []byte `json:"ciphertext"`
	}{ciphertext}, nil
}

// decrypt serves PUT /v1/key/decrypt/{name} {"ciphertext","context"}: any
// version of the key, as the ciphertext names it.
func (a *API) decrypt(r *request) (any, error) {
	name, err := keyName(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Ciphertext []byte `json:"ciphertext"`
		Context    []byte `json:"context"`
	}
	if err := decodeBody(r, &req, false, errBody); err != nil {
		return nil, err
	}
	plaintext, err := a.svc.Decrypt(r.caller, a.enclave, name, 0, req.Ciphertext, req.Context)
	if err != nil {
		return nil, err
	}
	return struct {
		Plaintext []byte `json:"plaintext"`
	}{plaintext}, nil
}

// maxBulkDecrypt bounds the ciphertexts of one bulk decryption, as KES did.
const maxBulkDecrypt = 1000

// bulkDecrypt serves POST /v1/key/bulk/decrypt/{name}
// [{"ciphertext","context"},…]: the route KES removed in October 2023,
// which MinIO releases of before then call when they list encrypted
// objects (if the caller's policy shows it). As in KES, the first
// ciphertext that fails fails the whole request.
func (a *API) bulkDecrypt(r *request) (any, error) {
	name, err := keyName(r)
	if err != nil {
		return nil, err
	}
	var reqs []struct {
		Ciphertext []byte `json:"ciphertext"`
		Context    []byte `json:"context"`
	}
	if err := decodeBody(r, &reqs, false, errBody); err != nil {
		return nil, err
	}
	if len(reqs) > maxBulkDecrypt {
		return nil, errTooMany
	}
	type plaintext struct {
		Plaintext []byte `json:"plaintext"`
	}
	out := make([]plaintext, len(reqs))
	for i, req := range reqs {
		if out[i].Plaintext, err = a.svc.Decrypt(r.caller, a.enclave, name, 0, req.Ciphertext, req.Context); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// hmac serves PUT /v1/key/hmac/{name} {"message"}: HMAC-SHA256 under a
// MAC key derived from the key (see service.HMAC).
func (a *API) hmac(r *request) (any, error) {
	name, err := keyName(r)
	if err != nil {
		return nil, err
	}
	var req struct {
		Message []byte `json:"message"`
	}
	if err := decodeBody(r, &req, false, errBody); err != nil {
		return nil, err
	}
	sum, err := a.svc.HMAC(r.caller, a.enclave, name, req.Message)
	if err != nil {
		return nil, err
	}
	return struct {
		HMAC []byte `json:"hmac"`
	}{sum}, nil
}
