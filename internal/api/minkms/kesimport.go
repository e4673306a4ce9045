package minkms

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/keep-kms/keep/internal/service"
)

// kesImportReply is the reply of PUT /v1/kes/import/{enclave}/{name}.
type kesImportReply struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Format    string `json:"format"`
	Algorithm string `json:"algorithm"`
	HMAC      bool   `json:"hmac"`
}

// importKES serves PUT /v1/kes/import/{enclave}/{name}[?dry-run=true]: the
// body is one key file of a KES keystore, as KES wrote it (keep import-kes
// sends them one by one).
func (a *API) importKES(w http.ResponseWriter, r *http.Request, c service.Caller) {
	name := r.PathValue("name")
	dryRun, err := dryRunOf(r)
	noteAudit(r, name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	file, err := readBody(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	res, err := a.svc.ImportKES(r.Context(), c, r.PathValue("enclave"), name, file, dryRun)
	clear(file)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, r, kesImportReply{
		Name: res.Name, Status: string(res.Status), Format: string(res.Format),
		Algorithm: string(res.Algorithm), HMAC: res.HMAC,
	})
}

// dryRunOf reads the query's dry-run flag: absent is false.
func dryRunOf(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("dry-run")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: dry-run=%q is not true or false", errMalformed, v)
	}
	return b, nil
}
