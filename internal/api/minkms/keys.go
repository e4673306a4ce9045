package minkms

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// maxKeyChange bounds the body of a key lifecycle request.
const maxKeyChange = 4 << 10

// keyInfoReply is a key with every version, its state and its rotation:
// the reply of GET /v1/keys/{enclave}/{name} and of every change there.
type keyInfoReply struct {
	Enclave      string         `json:"enclave"`
	Name         string         `json:"name"`
	RotateEvery  string         `json:"rotate_every"` // "" for none
	NextRotation *time.Time     `json:"next_rotation,omitempty"`
	Versions     []versionReply `json:"versions"`
}

// versionReply is one version of a keyInfoReply.
type versionReply struct {
	Version   uint32     `json:"version"`
	Type      string     `json:"type"`
	State     string     `json:"state"`
	DeleteAt  *time.Time `json:"delete_at,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	Imported  bool       `json:"imported"`
	KES       bool       `json:"kes"`
	Usage     usageReply `json:"usage"`
}

// usageReply is the use of a version, summed over every node: its last
// generate (or encrypt) and decrypt (absent if never reported) and its
// counts of the last 30 days.
type usageReply struct {
	LastGenerate *time.Time `json:"last_generate,omitempty"`
	LastDecrypt  *time.Time `json:"last_decrypt,omitempty"`
	Generates30d uint64     `json:"generates_30d"`
	Decrypts30d  uint64     `json:"decrypts_30d"`
}

// keyChange is the body of a PUT /v1/keys/{enclave}/{name}/ACTION: which
// versions (one, 0 for the latest, or all), and the deletion window or the
// rotation period as a duration ("168h", "7d").
type keyChange struct {
	Version uint32  `json:"version"`
	All     bool    `json:"all"`
	Window  *string `json:"window"`
	Every   string  `json:"every"`
	// Force deletes or disables versions that decrypted in the last 30
	// days.
	Force bool `json:"force"`
}

// keyActions are the changes of PUT /v1/keys/{enclave}/{name}/ACTION.
var keyActions = map[string]func(a *API, r *http.Request, c service.Caller, enclave, name string, req *keyChange) (state.KeyInfo, error){
	"delete": func(a *API, r *http.Request, c service.Caller, enclave, name string, req *keyChange) (state.KeyInfo, error) {
		var window *time.Duration
		if req.Window != nil {
			w, err := service.ParseDuration(*req.Window)
			if err != nil {
				return state.KeyInfo{}, fmt.Errorf("%w: window: %v", state.ErrInvalidArgument, err)
			}
			window = &w
		}
		return a.svc.ScheduleKeyDeletion(r.Context(), c, enclave, name, req.Version, req.All, window, req.Force)
	},
	"cancel-delete": func(a *API, r *http.Request, c service.Caller, enclave, name string, req *keyChange) (state.KeyInfo, error) {
		return a.svc.CancelKeyDeletion(r.Context(), c, enclave, name, req.Version, req.All)
	},
	"disable": func(a *API, r *http.Request, c service.Caller, enclave, name string, req *keyChange) (state.KeyInfo, error) {
		return a.svc.SetKeyDisabled(r.Context(), c, enclave, name, req.Version, req.All, true, req.Force)
	},
	"enable": func(a *API, r *http.Request, c service.Caller, enclave, name string, req *keyChange) (state.KeyInfo, error) {
		return a.svc.SetKeyDisabled(r.Context(), c, enclave, name, req.Version, req.All, false, false)
	},
	"rotation": func(a *API, r *http.Request, c service.Caller, enclave, name string, req *keyChange) (state.KeyInfo, error) {
		every, err := service.ParseDuration(req.Every)
		if err != nil {
			return state.KeyInfo{}, fmt.Errorf("%w: every: %v", state.ErrInvalidArgument, err)
		}
		return a.svc.SetKeyRotation(r.Context(), c, enclave, name, every)
	},
}

// keyInfo serves GET /v1/keys/{enclave}/{name}.
func (a *API) keyInfo(w http.ResponseWriter, r *http.Request, c service.Caller) {
	enclave, name := r.PathValue("enclave"), r.PathValue("name")
	noteAudit(r, name)
	info, err := a.svc.KeyInfo(c, enclave, name)
	writeKeyInfo(w, r, enclave, info, err)
}

// changeKey serves PUT /v1/keys/{enclave}/{name}/{action}.
func (a *API) changeKey(w http.ResponseWriter, r *http.Request, c service.Caller) {
	enclave, name := r.PathValue("enclave"), r.PathValue("name")
	noteAudit(r, name+" "+r.PathValue("action"))
	action, ok := keyActions[r.PathValue("action")]
	if !ok {
		writeError(w, r, errNotFound)
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var req keyChange
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeError(w, r, fmt.Errorf("%w: %v", errMalformed, err))
			return
		}
	}
	info, err := action(a, r, c, enclave, name, &req)
	writeKeyInfo(w, r, enclave, info, err)
}

// writeKeyInfo sends info, or err.
func writeKeyInfo(w http.ResponseWriter, r *http.Request, enclave string, info state.KeyInfo, err error) {
	if err != nil {
		writeError(w, r, err)
		return
	}
	reply := keyInfoReply{Enclave: enclave, Name: info.Name, Versions: []versionReply{}}
	if info.RotateEvery > 0 {
		reply.RotateEvery = info.RotateEvery.String()
	}
	if t := info.NextRotation(); !t.IsZero() {
		reply.NextRotation = &t
	}
	for i, v := range info.Versions {
		vr := versionReply{
			Version: v.Version, Type: string(v.Type()), State: string(v.State()),
			CreatedAt: v.CreatedAt, CreatedBy: v.CreatedBy, Imported: v.Imported, KES: v.KES != nil,
		}
		if i < len(info.Usage) {
			u := info.Usage[i]
			vr.Usage = usageReply{Generates30d: u.Generates30d, Decrypts30d: u.Decrypts30d}
			if !u.LastGenerate.IsZero() {
				vr.Usage.LastGenerate = &u.LastGenerate
			}
			if !u.LastDecrypt.IsZero() {
				vr.Usage.LastDecrypt = &u.LastDecrypt
			}
		}
		if !v.DeleteAt.IsZero() {
			vr.DeleteAt = &v.DeleteAt
		}
		reply.Versions = append(reply.Versions, vr)
	}
	writeJSON(w, r, reply)
}
