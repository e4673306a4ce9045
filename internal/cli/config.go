package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// configTimeout bounds a /v1/config request; a change goes through raft.
const configTimeout = 30 * time.Second

// configView is a node's reply to /v1/config: its own configuration, the
// cluster-wide settings that are set, and the settings it follows.
type configView struct {
	Node      map[string]any    `json:"node"`
	Cluster   map[string]string `json:"cluster"`
	Effective map[string]string `json:"effective"`
}

func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Show or change the settings of the cluster",
		Long: `Show a node's configuration and the settings it follows, or change
cluster-wide settings. Cluster-wide settings are replicated: a change made
through any node applies to every node at once, without a restart, and
overrides each node's config file. Needs SysAdmin privileges.`,
		Args: argsRange(0, 0),
	}
	cmd.AddCommand(a.configGetCommand(), a.configSetCommand())
	return cmd
}

func (a *app) configGetCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "get [HOST[:PORT]]",
		Short: "Show a node's configuration and the settings it follows",
		Long: `Show the settings the node at HOST[:PORT] (default: the first server in
MINIO_KMS_SERVER) follows, and whether each comes from the cluster-wide
settings or from the node's own configuration. --json prints the whole
configuration of the node.`,
		Args: argsRange(0, 1),
		PreRunE: func(_ *cobra.Command, args []string) error {
			_, err := a.nodeHost(args)
			return err
		},
	}
	asJSON := addJSONFlag(cmd)
	f := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		host, _ := a.nodeHost(args)
		v, err := a.sendConfig(cmd, f, host, http.MethodGet, nil)
		if err != nil {
			return err
		}
		return output(cmd, *asJSON, v, func(w io.Writer) error { return writeSettings(w, host, v) })
	}
	return cmd
}

func (a *app) configSetCommand() *cobra.Command {
	var changes map[string]string
	cmd := &cobra.Command{
		Use:   "set KEY=VALUE...",
		Short: "Change cluster-wide settings",
		Long: `Change cluster-wide settings on every node of the cluster, through the
first server in MINIO_KMS_SERVER. All or none of the changes are made.
KEY= (no value) resets a setting to each node's own configuration.

Settings:
  log.level              debug, info, warn or error
  audit                  on or off: write audit records to the audit sink
  cluster.max_staleness  how long a node cut off from the leader serves
                         reads, e.g. 30s; 0 serves them for ever
  metrics.auth           sysadmin, or public: /v1/health/metrics may be
                         scraped without a client certificate
  admin.identity         h1:… of a registered SysAdmin identity that becomes
                         the cluster's admin on every node: the HSM-derived
                         root API key (and the admin.identity of each node's
                         config file) then gets 403 everywhere. Only the
                         current admin may change it; admin.identity= gives
                         every node its own root back. The admin cannot be
                         deleted while it is the admin.
  usage.report_interval  how often each node reports the use of its key
                         versions (stat-key's usage), e.g. 1m (default);
                         at least 100ms

Every change is audited on every node before it takes effect, with the
settings it changed and their values (audit=off is recorded before the
audit log stops).`,
		Example: `  keep config set log.level=debug
  keep config set cluster.max_staleness=30s metrics.auth=public
  keep config set log.level=
  keep add-identity h1:… --sysadmin && keep config set admin.identity=h1:…`,
		Args: argsRange(1, -1),
		PreRunE: func(_ *cobra.Command, args []string) error {
			var err error
			changes, err = parseSettings(args)
			return err
		},
	}
	f := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		host, err := a.nodeHost(nil)
		if err != nil {
			return err
		}
		v, err := a.sendConfig(cmd, f, host, http.MethodPut, changes)
		if err != nil {
			return err
		}
		return writeSettings(cmd.OutOrStdout(), host, v)
	}
	return cmd
}

// parseSettings parses KEY=VALUE arguments.
func parseSettings(args []string) (map[string]string, error) {
	changes := map[string]string{}
	for _, arg := range args {
		k, v, ok := strings.Cut(arg, "=")
		if !ok || k == "" {
			return nil, usageErrorf("invalid setting %q: expected KEY=VALUE, e.g. log.level=debug", arg)
		}
		if _, dup := changes[k]; dup {
			return nil, usageErrorf("setting %s given twice", k)
		}
		changes[k] = v
	}
	return changes, nil
}

// sendConfig reads (changes nil) or changes the settings through the node
// at host and returns its configuration after the change.
func (a *app) sendConfig(cmd *cobra.Command, f *clientFlags, host, method string, changes map[string]string) (*configView, error) {
	hc, err := a.httpClient(f)
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if changes != nil {
		data, err := json.Marshal(changes)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), configTimeout)
	defer cancel()
	resp, err := sendNode(ctx, hc, method, host, "/v1/config", "application/json", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v configView
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: invalid reply to %s /v1/config: %w", host, method, err)
	}
	return &v, nil
}

// writeSettings shows the settings a node follows and where each comes
// from.
func writeSettings(w io.Writer, host string, v *configView) error {
	if _, err := fmt.Fprintf(w, "Settings of %s\n\n", host); err != nil {
		return err
	}
	t := newTable(w, "SETTING", "VALUE", "SET BY")
	for _, k := range slices.Sorted(maps.Keys(v.Effective)) {
		by := "node config"
		if _, ok := v.Cluster[k]; ok {
			by = "cluster"
		}
		t.row(k, v.Effective[k], by)
	}
	return t.flush()
}
