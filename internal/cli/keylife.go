package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"

	"github.com/keep-kms/keep/internal/service"
	"github.com/keep-kms/keep/internal/state"
)

// keyRouteTimeout bounds one request to a key lifecycle route; a change
// goes through raft.
const keyRouteTimeout = 30 * time.Second

// Key version states, as the server names them in a KeyInfo.
const (
	stateActive          = "active"
	stateDisabled        = "disabled"
	statePendingDeletion = "pending-deletion"
)

// apiTime is a time in a KeyInfo: RFC 3339, or absent, "" or null for
// none.
type apiTime struct{ time.Time }

// UnmarshalJSON reads an RFC 3339 time; "" and null are the zero time.
func (t *apiTime) UnmarshalJSON(b []byte) error {
	if s := string(b); s == `""` || s == "null" {
		t.Time = time.Time{}
		return nil
	}
	return json.Unmarshal(b, &t.Time)
}

// keyInfo is the server's reply on the key lifecycle routes
// (GET /v1/keys/{enclave}/{name} and the PUTs below it).
type keyInfo struct {
	Enclave      string           `json:"enclave"`
	Name         string           `json:"name"`
	RotateEvery  string           `json:"rotate_every"`
	NextRotation apiTime          `json:"next_rotation"`
	Versions     []keyVersionInfo `json:"versions"`
}

// keyVersionInfo is one version of a keyInfo.
type keyVersionInfo struct {
	Version   int     `json:"version"`
	Type      string  `json:"type"`
	State     string  `json:"state"`
	DeleteAt  apiTime `json:"delete_at"`
	CreatedAt apiTime `json:"created_at"`
	CreatedBy string  `json:"created_by"`
	Imported  bool    `json:"imported"`
	KES       bool    `json:"kes"`
	Usage     struct {
		LastGenerate apiTime `json:"last_generate"`
		LastDecrypt  apiTime `json:"last_decrypt"`
		Generates30d uint64  `json:"generates_30d"`
		Decrypts30d  uint64  `json:"decrypts_30d"`
	} `json:"usage"`
}

// latest returns the latest version of k, the one with the highest
// number, or nil if k has none.
func (k *keyInfo) latest() *keyVersionInfo {
	var l *keyVersionInfo
	for i := range k.Versions {
		if l == nil || k.Versions[i].Version > l.Version {
			l = &k.Versions[i]
		}
	}
	return l
}

// version returns version n of k, the latest for 0, or nil if there is no
// such version.
func (k *keyInfo) version(n int) *keyVersionInfo {
	if n == 0 {
		return k.latest()
	}
	for i := range k.Versions {
		if k.Versions[i].Version == n {
			return &k.Versions[i]
		}
	}
	return nil
}

// keyChange is the body of the PUTs of the key lifecycle routes; each
// route reads the fields it knows.
type keyChange struct {
	Version int     `json:"version,omitempty"`
	All     bool    `json:"all,omitempty"`
	Window  *string `json:"window,omitempty"`
	Force   bool    `json:"force,omitempty"`
	Every   *string `json:"every,omitempty"`
}

// keyClient sends requests to the key lifecycle routes, which kms-go has
// no methods for, authenticated as the kms-go client of the command.
type keyClient struct {
	hc        *http.Client
	endpoints []string
}

// get returns the KeyInfo of key name in enclave.
func (kc *keyClient) get(ctx context.Context, enclave, name string) (*keyInfo, error) {
	return kc.send(ctx, http.MethodGet, enclave, name, "", nil)
}

// put sends change to the route action of key name in enclave and returns
// the KeyInfo after the change.
func (kc *keyClient) put(ctx context.Context, enclave, name, action string, change *keyChange) (*keyInfo, error) {
	return kc.send(ctx, http.MethodPut, enclave, name, action, change)
}

// send makes a request to /v1/keys/{enclave}/{name}[/action] on the first
// server in MINIO_KMS_SERVER that can be reached (as the kms-go client
// fails over) and decodes the KeyInfo it replies with. The empty enclave
// is the server's default enclave.
func (kc *keyClient) send(ctx context.Context, method, enclave, name, action string, body any) (*keyInfo, error) {
	if enclave == "" {
		enclave = state.DefaultEnclave
	}
	path := "/v1/keys/" + url.PathEscape(enclave) + "/" + url.PathEscape(name)
	if action != "" {
		path += "/" + action
	}
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, keyRouteTimeout)
	defer cancel()

	var err error
	for _, e := range kc.endpoints {
		host, herr := hostPort(e)
		if herr != nil {
			return nil, fmt.Errorf("%s: %v", EnvServer, herr)
		}
		var r io.Reader
		if data != nil {
			r = bytes.NewReader(data)
		}
		var resp *http.Response
		resp, err = sendNode(ctx, kc.hc, method, host, path, "application/json", r)
		if err != nil {
			if notSent(err) && ctx.Err() == nil {
				continue // the next server may be up
			}
			return nil, err
		}
		defer resp.Body.Close()
		var k keyInfo
		if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&k); err != nil {
			return nil, &kms.HostError{Host: host, Err: fmt.Errorf("invalid reply to %s %s: %w", method, path, err)}
		}
		return &k, nil
	}
	return nil, err
}

// withKeyClients is withClient for commands that also use the key
// lifecycle routes: fn gets a client for those too.
func (a *app) withKeyClients(cmd *cobra.Command, fn func(cmd *cobra.Command, c *kms.Client, kc *keyClient, args []string) error) *cobra.Command {
	f := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := a.client(f)
		if err != nil {
			return err
		}
		hc, err := a.httpClient(f)
		if err != nil {
			return err
		}
		return fn(cmd, c, &keyClient{hc: hc, endpoints: endpoints(a.getenv(EnvServer))}, args)
	}
	return cmd
}

// durationFlag parses the value of the duration flag name, a Go duration
// or a number of days ("90d") as the server's settings take it, into
// *out; it is a usage error if the value is not one.
func durationFlag(name, value string, out **string) error {
	d, err := service.ParseDuration(strings.TrimSpace(value))
	if err != nil {
		return usageErrorf("--%s: %v (use a duration such as 36h or 90m, or days such as 90d)", name, err)
	}
	s := d.String()
	*out = &s
	return nil
}

// versionFlags are -v/--version and --all of the commands that change the
// state of key versions.
type versionFlags struct {
	version uint
	all     bool
}

// addVersionFlags registers -v and --all on cmd; verb says what the
// command does to a version ("disable").
func addVersionFlags(cmd *cobra.Command, verb string) *versionFlags {
	v := new(versionFlags)
	cmd.Flags().UintVarP(&v.version, "version", "v", 0, "key version to "+verb+" (default: the latest)")
	cmd.Flags().BoolVar(&v.all, "all", false, verb+" every version of the key")
	return v
}

// hint returns the keep command line that does what: "keep WHAT NAME -v N
// [-e ENCLAVE]", for the messages of the commands.
func hint(what, name string, version int, enclave string) string {
	s := "keep " + what + " " + name + " -v " + strconv.Itoa(version)
	if enclave != "" {
		s += " -e " + enclave
	}
	return s
}

// formatWhen formats t for a message: local time with its zone, and how
// far from now it is.
func formatWhen(t, now time.Time) string {
	s := t.Local().Format("2006-01-02 15:04:05 MST")
	if d := t.Sub(now); d > 0 {
		s += " (in " + formatDuration(d) + ")"
	}
	return s
}

// describeVersion says what state version n of key k (in enclave, "" for
// the default) is in after a change, and how to undo it.
func describeVersion(k *keyInfo, n int, name, enclave string, now time.Time) string {
	v := k.version(n)
	if v == nil {
		return fmt.Sprintf("version %d of key %s is destroyed", n, name)
	}
	switch v.State {
	case statePendingDeletion:
		return fmt.Sprintf("version %d of key %s is destroyed at %s; cancel with '%s'",
			v.Version, name, formatWhen(v.DeleteAt.Time, now), hint("cancel-rm-key", name, v.Version, enclave))
	case stateDisabled:
		return fmt.Sprintf("version %d of key %s is disabled; enable it with '%s'",
			v.Version, name, hint("enable-key", name, v.Version, enclave))
	default:
		return fmt.Sprintf("version %d of key %s is %s", v.Version, name, v.State)
	}
}

// targets returns the versions of k a command with flags v acts on: every
// version with --all, else the one named (the latest for 0). A version k
// does not have is returned as it is, for the server to refuse.
func (v *versionFlags) targets(k *keyInfo) []int {
	if v.all {
		var all []int
		for _, kv := range k.Versions {
			all = append(all, kv.Version)
		}
		slices.Sort(all)
		return all
	}
	if l := k.version(int(v.version)); l != nil {
		return []int{l.Version}
	}
	return []int{int(v.version)}
}

// printStates writes one line per version in versions of key name: its
// state after a change.
func printStates(w io.Writer, k *keyInfo, versions []int, name, enclave string) error {
	now := time.Now()
	for _, n := range versions {
		if _, err := fmt.Fprintln(w, describeVersion(k, n, name, enclave, now)); err != nil {
			return err
		}
	}
	return nil
}

// stdinIsTerminal reports whether the confirmation of a command can be
// asked for on stdin.
func (a *app) stdinIsTerminal() bool {
	if a.stdinTTY != nil {
		return a.stdinTTY()
	}
	f, ok := a.stdin.(*os.File)
	return ok && isTerminalFile(f)
}

// confirm asks question on a terminal and reports whether the answer is
// yes. Without a terminal it returns a usage error naming --yes: a script
// must say what it wants.
func (a *app) confirm(cmd *cobra.Command, question string) error {
	if !a.stdinIsTerminal() {
		return usageErrorf("%s: add --yes to do it without asking", question)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s? [y/N] ", question)
	answer, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not confirmed: nothing changed")
}

func (a *app) rmKeyCommand() *cobra.Command {
	var (
		window string
		force  bool
		yes    bool
		change keyChange
	)
	cmd := &cobra.Command{
		Use:   "rm-key NAME",
		Short: "Schedule the deletion of the latest version of a key, one version (-v) or the whole key (--all)",
		Long: `Schedule the deletion of the latest version of a key, one version (-v) or
the whole key (--all).

The version is pending deletion for the deletion window (--window, or the
cluster setting keys.deletion_window, 7 days unless changed): it serves
nothing, and 'keep cancel-rm-key' restores it unchanged. When the window
ends, its material is destroyed on every node, and what was encrypted
under it cannot be decrypted any more. --window 0s destroys it now.

Deleting the latest version or the whole key asks for confirmation on a
terminal; elsewhere it needs --yes. A version that decrypted anything in
the last 30 days is in use: its deletion needs --force.`,
		Example: `  keep rm-key my-key -v 1                 schedule version 1 for deletion
  keep rm-key my-key --all --window 30d   the whole key, in 30 days
  keep cancel-rm-key my-key -v 1          changed your mind`,
		Args: argsRange(1, 1),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := exclusiveFlags(cmd, "version", "all"); err != nil {
				return err
			}
			if cmd.Flags().Changed("window") {
				return durationFlag("window", window, &change.Window)
			}
			return nil
		},
	}
	enclave := addEnclaveFlag(cmd)
	v := addVersionFlags(cmd, "delete")
	cmd.Flags().StringVar(&window, "window", "", "destroy after this long, e.g. 30d or 36h; 0s: now (default: the cluster's keys.deletion_window)")
	cmd.Flags().BoolVar(&force, "force", false, "delete even a version that decrypted something in the last 30 days")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation before deleting the latest version or the whole key")
	return a.withKeyClients(cmd, func(cmd *cobra.Command, _ *kms.Client, kc *keyClient, args []string) error {
		name := args[0]
		// The versions before, to know which is the latest. A caller
		// whose policy allows KEY:DELETE but not KEY:STATUS may still
		// delete, but is asked to confirm any version.
		before, err := kc.get(cmd.Context(), *enclave, name)
		var apiErr kms.Error
		if errors.As(err, &apiErr) && apiErr.Code == http.StatusForbidden {
			before, err = &keyInfo{Name: name}, nil
		}
		if err != nil {
			return err
		}
		targets := v.targets(before)
		if !yes {
			latest := before.latest()
			when := "at the end of the deletion window"
			if change.Window != nil {
				when = "after " + *change.Window
			}
			switch {
			case v.all:
				err = a.confirm(cmd, fmt.Sprintf("Delete every version of key %s (destroyed %s; nothing encrypted under it can be decrypted after that)", name, when))
			case latest == nil && targets[0] == 0:
				err = a.confirm(cmd, fmt.Sprintf("Delete the latest version of key %s (destroyed %s; nothing it encrypted can be decrypted after that)", name, when))
			case latest == nil:
				err = a.confirm(cmd, fmt.Sprintf("Delete version %d of key %s, which may be its latest version (the key's versions cannot be read: KEY:STATUS is not allowed)", targets[0], name))
			case targets[0] == latest.Version:
				err = a.confirm(cmd, fmt.Sprintf("Delete version %d, the latest version, of key %s (destroyed %s; nothing it encrypted can be decrypted after that)", latest.Version, name, when))
			}
			if err != nil {
				return err
			}
		}
		// The version confirmed, not "the latest" of the moment the
		// request arrives: a rotation in between must not change what is
		// deleted.
		change.All, change.Force = v.all, force
		if !v.all {
			change.Version = targets[0]
		}
		after, err := kc.put(cmd.Context(), *enclave, name, "delete", &change)
		if err != nil {
			return err
		}
		switch {
		case len(targets) == 0: // --all, the versions unknown before
			if targets = v.targets(after); len(targets) == 0 {
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "every version of key %s is destroyed\n", name)
				return err
			}
		case targets[0] == 0 && change.Window != nil && *change.Window == "0s":
			// The latest, unknown before, is gone: after's latest is
			// another version.
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "the latest version of key %s is destroyed\n", name)
			return err
		}
		return printStates(cmd.OutOrStdout(), after, targets, name, *enclave)
	})
}

// stateCommand returns a command that puts key versions into a state
// through the route action, and prints their states after it.
func (a *app) stateCommand(use, short, long, action, verb string, withForce bool) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  argsRange(1, 1),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			return exclusiveFlags(cmd, "version", "all")
		},
	}
	enclave := addEnclaveFlag(cmd)
	v := addVersionFlags(cmd, verb)
	if withForce {
		cmd.Flags().BoolVar(&force, "force", false, verb+" even a version that decrypted something in the last 30 days")
	}
	return a.withKeyClients(cmd, func(cmd *cobra.Command, _ *kms.Client, kc *keyClient, args []string) error {
		name := args[0]
		after, err := kc.put(cmd.Context(), *enclave, name, action, &keyChange{Version: int(v.version), All: v.all, Force: force})
		if err != nil {
			return err
		}
		return printStates(cmd.OutOrStdout(), after, v.targets(after), name, *enclave)
	})
}

func (a *app) cancelRmKeyCommand() *cobra.Command {
	return a.stateCommand("cancel-rm-key NAME",
		"Cancel the scheduled deletion of a key version (-v) or of every version (--all)",
		`Cancel the scheduled deletion of the latest version of a key, one version
(-v) or every version (--all): the version is active again, unchanged, and
decrypts what it encrypted before. A version whose deletion window has
ended is destroyed and cannot be restored.`,
		"cancel-delete", "restore", false)
}

func (a *app) disableKeyCommand() *cobra.Command {
	return a.stateCommand("disable-key NAME",
		"Disable the latest version of a key, one version (-v) or every version (--all)",
		`Disable the latest version of a key, one version (-v) or every version
(--all): it generates, encrypts and decrypts nothing until 'keep enable-key'.
Nothing is destroyed. A version that decrypted anything in the last 30 days
is in use: disabling it needs --force.`,
		"disable", "disable", true)
}

func (a *app) enableKeyCommand() *cobra.Command {
	return a.stateCommand("enable-key NAME",
		"Enable the latest version of a key, one version (-v) or every version (--all)",
		`Enable the latest version of a key, one version (-v) or every version
(--all) after 'keep disable-key': it serves again as before.`,
		"enable", "enable", false)
}

func (a *app) rotateKeyCommand() *cobra.Command {
	var (
		every  string
		change keyChange
	)
	cmd := &cobra.Command{
		Use:   "rotate-key NAME --every PERIOD",
		Short: "Set how often a key is rotated automatically (--every 90d; 0: never)",
		Long: `Set how often a key is rotated automatically: every PERIOD the cluster adds
a new version, as 'keep add-key NAME --version' does; older versions still
decrypt what they encrypted. --every 0 turns automatic rotation off. A key
whose latest version is not active is not rotated. 'keep stat-key' shows
the period and the next rotation; 'keep add-key NAME --version' rotates
now.`,
		Example: `  keep rotate-key my-key --every 90d
  keep rotate-key my-key --every 0     no automatic rotation`,
		Args: argsRange(1, 1),
		PreRunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("every") {
				return usageErrorf("rotate-key: --every is required (to rotate now: keep add-key NAME --version)")
			}
			return durationFlag("every", every, &change.Every)
		},
	}
	enclave := addEnclaveFlag(cmd)
	cmd.Flags().StringVar(&every, "every", "", "rotation period, e.g. 90d or 36h; 0: never")
	return a.withKeyClients(cmd, func(cmd *cobra.Command, _ *kms.Client, kc *keyClient, args []string) error {
		after, err := kc.put(cmd.Context(), *enclave, args[0], "rotation", &change)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(cmd.OutOrStdout(), describeRotation(after, time.Now()))
		return err
	})
}

// describeRotation says when key k is rotated.
func describeRotation(k *keyInfo, now time.Time) string {
	every, err := time.ParseDuration(k.RotateEvery)
	if k.RotateEvery == "" || err != nil || every == 0 {
		return "key " + k.Name + " is not rotated automatically"
	}
	s := "key " + k.Name + " is rotated every " + formatDuration(every)
	if k.NextRotation.IsZero() {
		return s + "; paused while the latest version is not active"
	}
	return s + "; next at " + formatWhen(k.NextRotation.Time, now)
}

// keyInfoJSON is the JSON form of stat-key: the fields of keyJSON for the
// version shown, and every version with its state and usage.
type keyInfoJSON struct {
	keyJSON
	Enclave      string           `json:"enclave,omitempty"`
	RotateEvery  string           `json:"rotate_every,omitempty"`
	NextRotation string           `json:"next_rotation,omitempty"`
	Versions     []keyVersionJSON `json:"versions"`
}

// keyVersionJSON is the JSON form of one version in stat-key.
type keyVersionJSON struct {
	Version   int          `json:"version"`
	Type      string       `json:"type"`
	State     string       `json:"state"`
	DeleteAt  string       `json:"delete_at,omitempty"`
	CreatedAt string       `json:"created_at,omitempty"`
	CreatedBy string       `json:"created_by,omitempty"`
	Imported  bool         `json:"imported,omitempty"`
	KES       bool         `json:"kes,omitempty"`
	Usage     keyUsageJSON `json:"usage"`
}

// keyUsageJSON is the use of a key version.
type keyUsageJSON struct {
	LastGenerate string `json:"last_generate,omitempty"`
	LastDecrypt  string `json:"last_decrypt,omitempty"`
	Generates30d uint64 `json:"generates_30d"`
	Decrypts30d  uint64 `json:"decrypts_30d"`
}

// keyInfoView returns the JSON form of k with version shown at the top.
func keyInfoView(k *keyInfo, shown *keyVersionInfo) keyInfoJSON {
	v := keyInfoJSON{
		keyJSON: keyJSON{
			Name:      k.Name,
			Version:   shown.Version,
			Type:      shown.Type,
			CreatedAt: jsonTime(shown.CreatedAt.Time),
			CreatedBy: shown.CreatedBy,
			State:     shown.State,
		},
		Enclave:      k.Enclave,
		RotateEvery:  k.RotateEvery,
		NextRotation: jsonTime(k.NextRotation.Time),
		Versions:     []keyVersionJSON{},
	}
	for _, kv := range k.Versions {
		v.Versions = append(v.Versions, keyVersionJSON{
			Version:   kv.Version,
			Type:      kv.Type,
			State:     kv.State,
			DeleteAt:  jsonTime(kv.DeleteAt.Time),
			CreatedAt: jsonTime(kv.CreatedAt.Time),
			CreatedBy: kv.CreatedBy,
			Imported:  kv.Imported,
			KES:       kv.KES,
			Usage: keyUsageJSON{
				LastGenerate: jsonTime(kv.Usage.LastGenerate.Time),
				LastDecrypt:  jsonTime(kv.Usage.LastDecrypt.Time),
				Generates30d: kv.Usage.Generates30d,
				Decrypts30d:  kv.Usage.Decrypts30d,
			},
		})
	}
	return v
}

// origin says where a key version's material comes from: "" if the
// cluster generated it.
func origin(v *keyVersionInfo) string {
	switch {
	case v.KES:
		return "KES"
	case v.Imported:
		return "imported"
	}
	return ""
}

func (a *app) statKeyCommand() *cobra.Command {
	var version uint
	cmd := &cobra.Command{
		Use:   "stat-key NAME",
		Short: "Show a key: its rotation, and every version's state and use",
		Long: `Show a key: the latest version (or -v N), the rotation period and the next
rotation, then every version: its state (active, disabled, pending-deletion
and when it is destroyed), when it was created, and when it last generated
a data key and decrypted one, and how many it generated and decrypted in
the last 30 days, over every node (reported every usage.report_interval).`,
		Args: argsRange(1, 1),
	}
	enclave := addEnclaveFlag(cmd)
	asJSON := addJSONFlag(cmd)
	cmd.Flags().UintVarP(&version, "version", "v", 0, "key version to show at the top (default: the latest)")
	return a.withKeyClients(cmd, func(cmd *cobra.Command, _ *kms.Client, kc *keyClient, args []string) error {
		k, err := kc.get(cmd.Context(), *enclave, args[0])
		if err != nil {
			return err
		}
		slices.SortFunc(k.Versions, func(x, y keyVersionInfo) int { return x.Version - y.Version })
		shown := k.version(int(version))
		if shown == nil {
			return kms.Error{Code: http.StatusNotFound, Err: fmt.Sprintf("key does not exist: key %s has no version %d", args[0], version)}
		}
		now := time.Now()
		return output(cmd, *asJSON, keyInfoView(k, shown), func(w io.Writer) error {
			rotation := "never"
			if every, err := time.ParseDuration(k.RotateEvery); err == nil && every > 0 {
				rotation = "every " + formatDuration(every)
				if !k.NextRotation.IsZero() {
					rotation += ", next " + formatWhen(k.NextRotation.Time, now)
				} else {
					// The server names no next rotation while the latest
					// version does not serve.
					rotation += ", paused while the latest version is not active"
				}
			}
			if err := writeDetails(w, []field{
				{"Name", k.Name},
				{"Version", strconv.Itoa(shown.Version)},
				{"Type", shown.Type},
				{"State", shown.State},
				{"Created", formatTimeAge(shown.CreatedAt.Time, now)},
				{"Created by", shown.CreatedBy},
				{"Rotation", rotation},
			}); err != nil {
				return err
			}
			if _, err := fmt.Fprintln(w); err != nil {
				return err
			}
			t := newTable(w, "VERSION", "TYPE", "STATE", "DESTROYED AT", "CREATED", "ORIGIN", "LAST GENERATE", "LAST DECRYPT", "GENERATES 30D", "DECRYPTS 30D")
			for _, kv := range k.Versions {
				t.row(strconv.Itoa(kv.Version), kv.Type, kv.State, formatTime(kv.DeleteAt.Time), formatTime(kv.CreatedAt.Time), origin(&kv),
					formatTime(kv.Usage.LastGenerate.Time), formatTime(kv.Usage.LastDecrypt.Time),
					strconv.FormatUint(kv.Usage.Generates30d, 10), strconv.FormatUint(kv.Usage.Decrypts30d, 10))
			}
			return t.flush()
		})
	})
}

// lsKeyStates is how many key states ls-key asks for at once.
const lsKeyStates = 8

// keyStates returns the state of the latest version of each key in list,
// by name, asked for lsKeyStates at a time. A key deleted since the
// listing, or whose status the caller may not read (a policy may allow
// KEY:LIST without KEY:STATUS), has no state.
func keyStates(ctx context.Context, kc *keyClient, enclave string, list []kms.KeyStatusResponse) (map[string]string, error) {
	var (
		mu     sync.Mutex
		states = make(map[string]string, len(list))
		first  error
		wg     sync.WaitGroup
		sem    = make(chan struct{}, lsKeyStates)
	)
	for _, k := range list {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			info, err := kc.get(ctx, enclave, k.Name)
			var apiErr kms.Error
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, kms.ErrKeyNotFound), errors.As(err, &apiErr) && apiErr.Code == http.StatusForbidden:
			case err != nil:
				if first == nil {
					first = err
				}
			default:
				if l := info.latest(); l != nil {
					states[k.Name] = l.State
				}
			}
		}()
	}
	wg.Wait()
	return states, first
}

func (a *app) lsKeyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls-key [PREFIX]",
		Short: "List keys, their latest versions and their states",
		Args:  argsRange(0, 1),
	}
	enclave := addEnclaveFlag(cmd)
	asJSON := addJSONFlag(cmd)
	return a.withKeyClients(cmd, func(cmd *cobra.Command, c *kms.Client, kc *keyClient, args []string) error {
		list, err := listAll(cmd.Context(), c.ListKeys, *enclave, prefixArg(args))
		if err != nil {
			return err
		}
		states, err := keyStates(cmd.Context(), kc, *enclave, list)
		if err != nil {
			return err
		}
		views := make([]keyJSON, 0, len(list))
		for i := range list {
			v := keyView(&list[i])
			v.State = states[v.Name]
			views = append(views, v)
		}
		return output(cmd, *asJSON, views, func(w io.Writer) error {
			t := newTable(w, "NAME", "VERSION", "TYPE", "CREATED", "STATE")
			for _, k := range list {
				t.row(k.Name, strconv.Itoa(k.Version), k.Type.String(), formatTime(k.CreatedAt), states[k.Name])
			}
			return t.flush()
		})
	})
}
