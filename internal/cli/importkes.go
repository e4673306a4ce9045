package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keep-kms/keep/internal/kesstore"
	"github.com/keep-kms/keep/internal/state"
	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"
)

// importWorkers is how many keys import-kes sends at once. Each import is
// one raft entry; eight in flight keep a node's raft batches full without
// queueing a whole keystore at once.
const importWorkers = 8

// importProgressInterval is how often the progress line is written.
const importProgressInterval = time.Second

// importRetries bounds the attempts of one key while the server answers
// 429 (rate limit) or 503 (e.g. no leader during an election).
const importRetries = 10

// importRetryMax caps the wait before a retry, whatever Retry-After says.
const importRetryMax = 10 * time.Second

// The outcomes of one key. The first three are the server's status words.
const (
	outImported = "imported" // created now
	outExists   = "exists"   // already in Keep with the same material
	outNew      = "new"      // dry run: would be imported
	outRefused  = "refused"  // not imported; see importResult.why
	outSkipped  = "skipped"  // not a key KES could have served
)

// Why a key was refused.
const (
	whyMalformed  = "malformed"  // the server found the key file invalid (400)
	whyUnreadable = "unreadable" // the file could not be read
	whyConflict   = "conflict"   // the name exists in Keep with other material (409)
	whyForbidden  = "forbidden"  // the API key may not import it (403)
	whyError      = "error"      // any other reply
)

// importResult is the outcome of one keystore entry.
type importResult struct {
	name    string
	outcome string
	why     string // refused: one of the why… constants
	detail  string // refused, skipped: the reason; otherwise format, algorithm
}

// importReply is the server's answer to a successful import request.
type importReply struct {
	Name      string `json:"name"`
	Status    string `json:"status"`
	Format    string `json:"format"`
	Algorithm string `json:"algorithm"`
	HMAC      bool   `json:"hmac"`
}

func (a *app) importKESCommand() *cobra.Command {
	var (
		configPath, fsDir, pattern string
		dryRun                     bool
		enclaveFlag                *string
	)
	cmd := &cobra.Command{
		Use:   "import-kes (--config FILE | --fs DIR) [-e ENCLAVE] [--key PATTERN] [--dry-run]",
		Short: "Import the keys of a KES keystore",
		Long: `Import the keys of a KES server's keystore into an enclave, so that Keep
decrypts what KES encrypted (see docs/migrate-from-kes.md).

--config reads the keystore section of the KES server config file (KES
v1 format, as given to 'kes server --config'); ${NAME} values are taken
from the environment, as KES does. Like KES, import-kes resolves relative
paths in it against the current working directory, not the directory of
the config file: run it from the directory KES was started in. --fs DIR
reads a bare fs keystore directory. Only fs keystores can be read; a config
with another keystore (Vault, a cloud secret manager, …) is refused.

Every key file, or those whose names match --key (a glob as in KES list
patterns: 'minio-*'), is sent to the server, which checks and imports it
with its name, algorithm, HMAC key and creation time. The import is
idempotent: a key already in Keep with the same material is left as it is
("already there"), so a re-run completes an interrupted import. A key whose
name exists in Keep with other material is reported and never overwritten;
a malformed or unreadable key file is reported by name.

Entries of an fs keystore that KES could never have served as keys
(directories, special files, names KES rejects) are skipped and listed.
Symbolic links are not followed: they are refused; copy the file a link
points to instead. The exit status is non-zero if any key was refused.

--dry-run imports nothing: it lists, per key, whether it would be imported,
is already there or would be refused, and why.`,
		Example: `  keep import-kes --config /etc/kes/config.yml --dry-run
  keep import-kes --config /etc/kes/config.yml -e tenant-1
  keep import-kes --fs /var/lib/kes/keys --key 'minio-*'`,
		Args: argsRange(0, 0),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := exclusiveFlags(cmd, "config", "fs"); err != nil {
				return err
			}
			if configPath == "" && fsDir == "" {
				return usageErrorf("import-kes: give --config FILE or --fs DIR")
			}
			if _, err := kesstore.Filter(nil, pattern); err != nil {
				return usageErrorf("%v", err)
			}
			if e := *enclaveFlag; e != "" {
				if err := state.ValidEnclaveName(e); err != nil {
					return usageErrorf("%v", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "KES server config file to take the keystore from")
	cmd.Flags().StringVar(&fsDir, "fs", "", "fs keystore directory to import")
	cmd.Flags().StringVar(&pattern, "key", "", "import only the keys whose names match this glob (default: all)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be imported; import nothing")
	enclaveFlag = addEnclaveFlag(cmd)
	f := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ks, err := a.openKeystore(configPath, fsDir)
		if err != nil {
			return err
		}
		enclave := *enclaveFlag
		if enclave == "" {
			enclave = state.DefaultEnclave
		}
		entries, err := ks.List(cmd.Context())
		if err != nil {
			return err
		}
		if entries, err = kesstore.Filter(entries, pattern); err != nil {
			return err
		}
		if len(entries) == 0 {
			if pattern != "" {
				return fmt.Errorf("no entry of the %s matches %q", ks, pattern)
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "The %s is empty: nothing to import.\n", ks)
			return err
		}
		hc, err := a.httpClient(f)
		if err != nil {
			return err
		}
		im := &importer{
			ks:      ks,
			hc:      hc,
			hosts:   endpoints(a.getenv(EnvServer)),
			enclave: enclave,
			dryRun:  dryRun,
			stderr:  a.stderr,
		}
		results, err := im.run(cmd.Context(), entries)
		if werr := writeImportSummary(cmd.OutOrStdout(), ks, enclave, dryRun, results, err != nil); werr != nil && err == nil {
			err = werr
		}
		if err != nil {
			return err
		}
		return refusedError(results, dryRun)
	}
	return cmd
}

// refusedError returns the error that makes the exit status non-zero if
// any key was refused; the summary has named them.
func refusedError(results []importResult, dryRun bool) error {
	keys, refused := 0, 0
	for _, r := range results {
		switch r.outcome {
		case outRefused:
			refused++
			keys++
		case outSkipped:
		default:
			keys++
		}
	}
	switch {
	case refused == 0:
		return nil
	case dryRun:
		return fmt.Errorf("%d of %d keys would be refused (listed above)", refused, keys)
	default:
		return fmt.Errorf("%d of %d keys refused (listed above)", refused, keys)
	}
}

// openKeystore opens the keystore named by the config file or, without
// one, the fs directory.
func (a *app) openKeystore(configPath, fsDir string) (kesstore.Keystore, error) {
	if fsDir != "" {
		return kesstore.OpenFS(fsDir)
	}
	lookup := a.lookupEnv
	if lookup == nil {
		lookup = func(k string) (string, bool) { v := a.getenv(k); return v, v != "" }
	}
	conf, err := kesstore.ReadConfig(configPath, lookup)
	if err != nil {
		return nil, err
	}
	return conf.Keystore.Open()
}

// importer sends the keys of a keystore to the import route, several at a
// time.
type importer struct {
	ks      kesstore.Keystore
	hc      *http.Client
	hosts   []string // the endpoints of MINIO_KMS_SERVER
	enclave string
	dryRun  bool

	stderr io.Writer
	mu     sync.Mutex // serializes writes to stderr
	host   atomic.Int32
	done   atomic.Int64
	counts [5]atomic.Int64 // by outcomeIndex
}

// outcomeIndex orders the outcomes for counting.
var outcomeIndex = map[string]int{outImported: 0, outExists: 1, outNew: 2, outRefused: 3, outSkipped: 4}

// run imports entries and returns one result per entry, in order. It
// stops at the first error that would fail every key (the server cannot
// be reached, the enclave does not exist, Ctrl-C), and returns it with
// the results so far; results of keys not tried have no outcome.
func (im *importer) run(ctx context.Context, entries []kesstore.Entry) ([]importResult, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	results := make([]importResult, len(entries))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(importWorkers, len(entries)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, err := im.importOne(ctx, entries[i])
				if err != nil {
					cancel(err)
					continue
				}
				results[i] = r
				im.record(r)
			}
		}()
	}

	stop := im.showProgress(len(entries))
feed:
	for i := range entries {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	stop()
	if err := context.Cause(ctx); err != nil {
		return results, err
	}
	return results, nil
}

// record counts r and reports a refused key on stderr at once.
func (im *importer) record(r importResult) {
	im.done.Add(1)
	im.counts[outcomeIndex[r.outcome]].Add(1)
	if r.outcome == outRefused {
		im.mu.Lock()
		fmt.Fprintf(im.stderr, "refused %s: %s: %s\n", r.name, r.why, r.detail)
		im.mu.Unlock()
	}
}

// showProgress writes a counter line to stderr every
// importProgressInterval until the returned function is called.
func (im *importer) showProgress(total int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(importProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				im.mu.Lock()
				fmt.Fprintf(im.stderr, "import-kes: %d of %d entries (%s)\n", im.done.Load(), total, im.countLine())
				im.mu.Unlock()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// countLine summarizes the counts so far.
func (im *importer) countLine() string {
	first := "imported"
	n := im.counts[outcomeIndex[outImported]].Load()
	if im.dryRun {
		first, n = "would import", im.counts[outcomeIndex[outNew]].Load()
	}
	return fmt.Sprintf("%s %d, already there %d, refused %d, skipped %d", first, n,
		im.counts[outcomeIndex[outExists]].Load(), im.counts[outcomeIndex[outRefused]].Load(), im.counts[outcomeIndex[outSkipped]].Load())
}

// importOne imports the key of entry e. A refused key is a result; the
// error is for what would fail every key.
func (im *importer) importOne(ctx context.Context, e kesstore.Entry) (importResult, error) {
	r := importResult{name: e.Name}
	if e.Skip != "" {
		r.outcome, r.detail = outSkipped, e.Skip
		return r, nil
	}
	data, err := im.ks.Read(ctx, e.Name)
	switch {
	case ctx.Err() != nil:
		return r, ctx.Err()
	case errors.Is(err, kesstore.ErrTooLarge):
		r.outcome, r.why, r.detail = outRefused, whyMalformed, err.Error()
		return r, nil
	case err != nil:
		r.outcome, r.why, r.detail = outRefused, whyUnreadable, err.Error()
		return r, nil
	}

	path := "/v1/kes/import/" + url.PathEscape(im.enclave) + "/" + url.PathEscape(e.Name)
	if im.dryRun {
		path += "?dry-run=true"
	}
	for attempt := 1; ; attempt++ {
		status, body, retryAfter, err := im.put(ctx, path, data)
		if err != nil {
			return r, err
		}
		if (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) && attempt < importRetries {
			select {
			case <-time.After(retryAfter):
				continue
			case <-ctx.Done():
				return r, ctx.Err()
			}
		}
		return im.classify(r, status, body)
	}
}

// classify turns the server's reply to an import into a result, or into an
// error if no other key can be imported either.
func (im *importer) classify(r importResult, status int, body []byte) (importResult, error) {
	if status == http.StatusOK {
		var rep importReply
		if err := json.Unmarshal(body, &rep); err != nil {
			return r, fmt.Errorf("invalid reply to the import of %s: %w", r.name, err)
		}
		want := []string{outImported, outExists}
		if im.dryRun {
			want = []string{outNew, outExists}
		}
		if rep.Status != want[0] && rep.Status != want[1] {
			return r, fmt.Errorf("invalid reply to the import of %s: status %q", r.name, rep.Status)
		}
		r.outcome = rep.Status
		r.detail = strings.Join(nonEmpty(rep.Format, rep.Algorithm), ", ")
		if rep.HMAC {
			r.detail += ", HMAC"
		}
		return r, nil
	}

	msg := apiMessage(status, body)
	r.outcome, r.detail = outRefused, msg
	switch status {
	case http.StatusBadRequest:
		r.why = whyMalformed
	case http.StatusConflict:
		r.why = whyConflict
		r.detail = msg + " (the name exists in the enclave with other material; not overwritten)"
	case http.StatusForbidden:
		r.why = whyForbidden
	case http.StatusNotFound, http.StatusUnauthorized:
		// The enclave does not exist, the server has no import route, or
		// the API key is unknown: the same for every key.
		return r, kms.Error{Code: status, Err: msg}
	default:
		r.why = whyError
		r.detail = fmt.Sprintf("%d %s", status, msg)
	}
	return r, nil
}

// apiMessage returns the message of an error reply, or the status text.
func apiMessage(status int, body []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return oneLine(e.Message)
	}
	if s := oneLine(string(body)); s != "" && len(s) < 200 {
		return s
	}
	return strings.ToLower(http.StatusText(status))
}

// nonEmpty returns the non-empty strings of s.
func nonEmpty(s ...string) []string {
	var out []string
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// put sends one import request, to the first endpoint that can be reached,
// and returns the reply's status, body (at most 64 KiB) and how long to
// wait before a retry. An error means no endpoint answered.
func (im *importer) put(ctx context.Context, path string, data []byte) (status int, body []byte, retryAfter time.Duration, err error) {
	for tries := 0; tries < len(im.hosts); tries++ {
		i := int(im.host.Load())
		host, herr := hostPort(im.hosts[i])
		if herr != nil {
			return 0, nil, 0, fmt.Errorf("%s: %v", EnvServer, herr)
		}
		req, rerr := http.NewRequestWithContext(ctx, http.MethodPut, "https://"+host+path, bytes.NewReader(data))
		if rerr != nil {
			return 0, nil, 0, &kms.HostError{Host: host, Err: rerr}
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Accept", "application/json")
		resp, derr := im.hc.Do(req)
		if derr != nil {
			err = &kms.HostError{Host: host, Err: derr}
			if notSent(derr) && ctx.Err() == nil {
				// Try the next endpoint, and keep to it for the next keys.
				im.host.CompareAndSwap(int32(i), int32((i+1)%len(im.hosts))) // #nosec G115 -- a handful of endpoints
				continue
			}
			return 0, nil, 0, err
		}
		body, rerr = io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if rerr != nil {
			return 0, nil, 0, &kms.HostError{Host: host, Err: rerr}
		}
		return resp.StatusCode, body, retryDelay(resp.Header.Get("Retry-After")), nil
	}
	return 0, nil, 0, err
}

// retryDelay reads a Retry-After header in seconds: at least 100 ms, at
// most importRetryMax, 1 s if absent or not a number.
func retryDelay(h string) time.Duration {
	s, err := strconv.ParseFloat(strings.TrimSpace(h), 64)
	if err != nil || s < 0 {
		return time.Second
	}
	return min(max(time.Duration(s*float64(time.Second)), 100*time.Millisecond), importRetryMax)
}

// writeImportSummary writes what happened to each key, or would happen in
// a dry run: counts, then refused and skipped entries by name; a dry run
// lists every entry. interrupted means that not every entry was tried.
func writeImportSummary(w io.Writer, ks kesstore.Keystore, enclave string, dryRun bool, results []importResult, interrupted bool) error {
	var count [5]int
	tried := 0
	for _, r := range results {
		if r.outcome != "" {
			count[outcomeIndex[r.outcome]]++
			tried++
		}
	}
	// After an error that stopped the import before any key got an
	// answer, the error alone says what happened.
	if tried == count[outcomeIndex[outSkipped]] && interrupted {
		return nil
	}
	var b strings.Builder
	if dryRun {
		fmt.Fprintf(&b, "Dry run: nothing was imported from the %s into enclave %s.\n\n", ks, enclave)
		t := newTable(&b, "KEY", "ACTION", "DETAIL")
		for _, r := range results {
			switch r.outcome {
			case outNew:
				t.row(r.name, "import", r.detail)
			case outExists:
				t.row(r.name, "already there", r.detail)
			case outRefused:
				t.row(r.name, "refuse ("+r.why+")", r.detail)
			case outSkipped:
				t.row(r.name, "skip", r.detail)
			}
		}
		if err := t.flush(); err != nil {
			return err
		}
		fmt.Fprintf(&b, "\nWould import %d, already there %d, would refuse %d, skipped %d.\n",
			count[outcomeIndex[outNew]], count[outcomeIndex[outExists]], count[outcomeIndex[outRefused]], count[outcomeIndex[outSkipped]])
	} else {
		fmt.Fprintf(&b, "Imported from the %s into enclave %s:\n", ks, enclave)
		t := newTable(&b)
		t.row("  imported:", strconv.Itoa(count[outcomeIndex[outImported]]))
		t.row("  already there:", strconv.Itoa(count[outcomeIndex[outExists]]))
		t.row("  refused:", strconv.Itoa(count[outcomeIndex[outRefused]]))
		t.row("  skipped:", strconv.Itoa(count[outcomeIndex[outSkipped]]))
		if err := t.flush(); err != nil {
			return err
		}
		for _, list := range []struct{ outcome, title string }{
			{outRefused, "Refused (not imported):"},
			{outSkipped, "Skipped (not KES keys):"},
		} {
			if count[outcomeIndex[list.outcome]] == 0 {
				continue
			}
			fmt.Fprintf(&b, "\n%s\n", list.title)
			t := newTable(&b)
			for _, r := range results {
				if r.outcome == list.outcome {
					why := r.why
					if why != "" {
						why += ": "
					}
					t.row("  "+r.name, why+r.detail)
				}
			}
			if err := t.flush(); err != nil {
				return err
			}
		}
	}
	if interrupted {
		fmt.Fprintf(&b, "\nStopped after %d of %d entries; run the same command again to complete the import.\n", tried, len(results))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
