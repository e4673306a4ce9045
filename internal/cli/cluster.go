package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"

	"github.com/keep-kms/keep/internal/cluster"
)

// DefaultPort is the port of a node given as HOST without :PORT.
const DefaultPort = "7373"

// clusterCommands returns add, rm, ls, stat, edit, restart, backup,
// restore, add-hsm and rm-hsm. All need SysAdmin privileges.
func (a *app) clusterCommands() []*cobra.Command {
	return []*cobra.Command{
		a.addNodeCommand(),
		a.rmNodeCommand(),
		a.lsNodeCommand(),
		a.statCommand(),
		a.editCommand(),
		a.restartCommand(),
		a.backupCommand(),
		a.restoreCommand(),
		a.addHSMCommand(),
		a.rmHSMCommand(),
	}
}

// addRetryInterval is how long keep add --wait waits between attempts.
const addRetryInterval = 2 * time.Second

func (a *app) addNodeCommand() *cobra.Command {
	var (
		host     string
		existsOK bool
		wait     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "add HOST[:PORT]",
		Short: "Add a fresh node to the cluster",
		Long: `Add the node at HOST[:PORT] (default port ` + DefaultPort + `) to the cluster of the
server in MINIO_KMS_SERVER.

The node must be running with the cluster's HSM key, reachable from the
cluster at HOST[:PORT] (its --host), and fresh: a one-node cluster without
enclaves, keys, policies or identities of its own.

Deployments that add their nodes on every run (the Helm chart's join Job)
use --exists-ok, so that a node that is a member already is left alone, and
--wait, so that the command outlasts nodes that are still starting: it
retries while the cluster or HOST cannot be reached or answers 5xx, and
gives up at once on any other refusal (a wrong API key, a node that is not
fresh).`,
		Example: `  MINIO_KMS_SERVER=https://node0.example.net:7373 keep add node1.example.net
  MINIO_KMS_SERVER=https://node0.example.net:7373 keep add node1.example.net --exists-ok --wait 10m`,
		Args: argsRange(1, 1),
		PreRunE: func(_ *cobra.Command, args []string) (err error) {
			host, err = hostArg(args[0])
			return err
		},
	}
	cmd.Flags().BoolVar(&existsOK, "exists-ok", false, "succeed, changing nothing, when HOST is already a node of the cluster")
	cmd.Flags().DurationVar(&wait, "wait", 0, "retry for up to this long while the cluster or HOST cannot be reached or is not ready")
	f := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		// The request must reach a member of the cluster, not the node
		// to add, which MINIO_KMS_SERVER may list with the others.
		var members []string
		for _, ep := range endpoints(a.getenv(EnvServer)) {
			if h, err := hostPort(ep); err != nil || h != host {
				members = append(members, ep)
			}
		}
		if len(members) == 0 {
			return fmt.Errorf("%s names only %s, the node to add: point it at a node of the cluster", EnvServer, host)
		}
		c, err := a.clientTo(f, members)
		if err != nil {
			return err
		}
		deadline := time.Now().Add(wait)
		for {
			err = c.AddNode(cmd.Context(), &kms.AddClusterNodeRequest{Host: host})
			switch {
			case err == nil:
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "Added %s to the cluster\n", host)
				return err
			case existsOK && isMemberAlready(err):
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s is a node of the cluster already\n", host)
				return err
			case !retryable(err) || time.Now().Add(addRetryInterval).After(deadline):
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "keep: %s; trying again in %v\n", describeError(err), addRetryInterval)
			select {
			case <-cmd.Context().Done():
				return cmd.Context().Err()
			case <-time.After(addRetryInterval):
			}
		}
	}
	return cmd
}

// isMemberAlready reports whether err is the server's refusal to add a
// node that is in the cluster's configuration already (409 with the text
// of cluster.ErrNodeExists, which the server sends whole).
func isMemberAlready(err error) bool {
	var apiErr kms.Error
	return errors.As(err, &apiErr) && apiErr.Code == http.StatusConflict &&
		strings.HasPrefix(apiErr.Err, cluster.ErrNodeExists.Error())
}

// retryable reports whether a membership request may succeed if sent
// again later: the server could not be reached, or answered 5xx (no
// leader yet, the new node not reachable or still starting). A 4xx is the
// server's considered refusal, and a certificate that does not verify
// will not verify later either: neither is retried.
func retryable(err error) bool {
	var (
		apiErr      kms.Error
		certErr     *tls.CertificateVerificationError
		unknownCA   x509.UnknownAuthorityError
		hostnameErr x509.HostnameError
		invalidErr  x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &apiErr):
		return apiErr.Code >= http.StatusInternalServerError
	case errors.Is(err, context.Canceled), errors.As(err, &certErr), errors.As(err, &unknownCA),
		errors.As(err, &hostnameErr), errors.As(err, &invalidErr):
		return false
	}
	return true
}

func (a *app) rmNodeCommand() *cobra.Command {
	var (
		host          string
		deleteCluster bool
	)
	cmd := &cobra.Command{
		Use:   "rm HOST[:PORT]",
		Short: "Remove a node from the cluster",
		Long: `Remove the node at HOST[:PORT] (default port ` + DefaultPort + `) from the cluster.

Without --delete-cluster the removed node keeps its data but is no longer
part of any cluster: it refuses to start until its data is deleted. With
--delete-cluster it deletes its cluster state and carries on as a fresh
one-node cluster, which can be added to a cluster again.`,
		Args: argsRange(1, 1),
		PreRunE: func(_ *cobra.Command, args []string) (err error) {
			host, err = hostArg(args[0])
			return err
		},
	}
	cmd.Flags().BoolVar(&deleteCluster, "delete-cluster", false, "make the removed node delete its cluster state and start over as a fresh one-node cluster")
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, _ []string) error {
		err := c.RemoveNode(cmd.Context(), &kms.RemoveClusterNodeRequest{Host: host, DeleteClusterOnHost: deleteCluster})
		if err != nil {
			return err
		}
		msg := "Removed %s from the cluster\n"
		if deleteCluster {
			msg = "Removed %s from the cluster; it is a fresh one-node cluster now\n"
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), msg, host)
		return err
	})
}

// nodeJSON is the JSON form of a node in ls.
type nodeJSON struct {
	ID    int    `json:"node_id"`
	Host  string `json:"host"`
	State string `json:"state"` // Leader, Follower, Candidate or down
}

func (a *app) lsNodeCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the nodes of the cluster",
		Args:  argsRange(0, 0),
	}
	asJSON := addJSONFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, _ []string) error {
		s, err := c.ClusterStatus(cmd.Context(), &kms.ClusterStatusRequest{})
		if err != nil {
			return err
		}
		views := make([]nodeJSON, 0, len(s.NodesUp)+len(s.NodesDown))
		for _, id := range nodeIDs(s) {
			views = append(views, nodeJSON{ID: id, Host: nodeHost(s, id), State: nodeState(s, id)})
		}
		return output(cmd, *asJSON, views, func(w io.Writer) error {
			t := newTable(w, "ID", "HOST", "STATE")
			for _, n := range views {
				t.row(strconv.Itoa(n.ID), n.Host, n.State)
			}
			return t.flush()
		})
	})
}

func (a *app) statCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stat",
		Short: "Show the status of every node of the cluster",
		Long: `Show the status of every node of the cluster, as the server in
MINIO_KMS_SERVER sees it: nodes it cannot reach are shown as down.

Lag is how many state changes a node is behind its leader. HSM is the HSM
the node unsealed the root key with, and the HSMs it is configured with;
Sealed by lists the HSMs that seal the cluster's root key, as the node's
state has them (see add-hsm and rm-hsm).`,
		Args: argsRange(0, 0),
	}
	asJSON := addJSONFlag(cmd)
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, _ []string) error {
		s, hsms, err := clusterStatus(cmd.Context(), c)
		if err != nil {
			return err
		}
		return output(cmd, *asJSON, clusterView(s, hsms), func(w io.Writer) error {
			return writeClusterStatus(w, s, hsms, a.colors(w))
		})
	})
}

func (a *app) editCommand() *cobra.Command {
	var (
		host string
		ids  []int
	)
	cmd := &cobra.Command{
		Use:   "edit HOST[:PORT] --rm ID [--rm ID...]",
		Short: "Drop lost nodes from one node's view of the cluster (repair)",
		Long: `Remove the nodes with the given IDs from the cluster definition of the node at
HOST[:PORT] (default port ` + DefaultPort + `), on that node alone, without a majority.

This repairs a cluster that lost nodes for good and with them its majority.
Remove one failed node at a time; delete the data of a removed node before
adding it again.`,
		Example: `  keep edit node0.example.net --rm 2`,
		Args:    argsRange(1, 1),
		PreRunE: func(cmd *cobra.Command, args []string) (err error) {
			if host, err = hostArg(args[0]); err != nil {
				return err
			}
			if len(ids) == 0 {
				return usageErrorf("edit: give the ID of a node to remove with --rm; usage: %s", cmd.UseLine())
			}
			for _, id := range ids {
				if id < 0 {
					return usageErrorf("--rm: invalid node ID %d", id)
				}
			}
			return nil
		},
	}
	cmd.Flags().IntSliceVar(&ids, "rm", nil, "ID of a node to remove (repeatable)")
	return a.withClient(cmd, func(cmd *cobra.Command, c *kms.Client, _ []string) error {
		if err := c.EditCluster(cmd.Context(), &kms.EditClusterRequest{Host: host, Remove: ids}); err != nil {
			return err
		}
		list := make([]string, 0, len(ids))
		for _, id := range ids {
			list = append(list, strconv.Itoa(id))
		}
		noun := "node"
		if len(ids) > 1 {
			noun = "nodes"
		}
		_, err := fmt.Fprintf(cmd.OutOrStdout(), "Removed %s %s from the cluster definition of %s\n", noun, strings.Join(list, ", "), host)
		return err
	})
}

// hostArg parses a HOST[:PORT] argument as a usage error if it is invalid.
func hostArg(s string) (string, error) {
	host, err := hostPort(s)
	if err != nil {
		return "", usageErrorf("%v", err)
	}
	return host, nil
}

// hostPort returns s, HOST[:PORT], as host:port with the default port
// added if s has none. An https:// prefix is dropped, so endpoints as in
// MINIO_KMS_SERVER work too; IPv6 addresses may be given bare or in
// brackets.
func hostPort(s string) (string, error) {
	orig := s
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "https://"); ok {
		s = strings.TrimSuffix(rest, "/")
	}
	invalid := func(why string) error {
		return fmt.Errorf("invalid HOST[:PORT] %q: %s", orig, why)
	}
	switch {
	case s == "":
		return "", invalid("it is empty")
	case strings.Contains(s, "://"):
		return "", invalid("the only scheme is https://")
	case strings.ContainsAny(s, "/?#@ \t"):
		return "", invalid("expected a host name or IP address and an optional port")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a name, an IPv4 address, or an IPv6 address with
		// or without brackets.
		host, port = s, DefaultPort
		if b, ok := strings.CutPrefix(host, "["); ok {
			if host, ok = strings.CutSuffix(b, "]"); !ok {
				return "", invalid("missing ']'")
			}
		}
		if strings.Contains(host, ":") && net.ParseIP(host) == nil {
			return "", invalid("expected a host name or IP address and an optional port")
		}
	}
	if host == "" {
		return "", invalid("the host is missing")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", invalid("the port must be a number from 1 to 65535")
	}
	return net.JoinHostPort(host, port), nil
}

// nodeIDs returns the IDs of the up and down nodes of s, in order.
func nodeIDs(s *kms.ClusterStatusResponse) []int {
	ids := slices.Collect(maps.Keys(s.NodesUp))
	for id := range s.NodesDown {
		if _, ok := s.NodesUp[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// nodeHost returns the host of node id: what it says itself if it is up,
// otherwise the address in the cluster definition.
func nodeHost(s *kms.ClusterStatusResponse, id int) string {
	if n, ok := s.NodesUp[id]; ok && n.Host != "" {
		return n.Host
	}
	if h, ok := s.NodesDown[id]; ok {
		return h
	}
	// An up node that does not tell its host: the definition of any
	// other node that knows it.
	for _, n := range s.NodesUp {
		if h, ok := n.Nodes[id]; ok {
			return h
		}
	}
	return ""
}

// nodeState returns the role of node id, or "down".
func nodeState(s *kms.ClusterStatusResponse, id int) string {
	n, ok := s.NodesUp[id]
	if !ok || n == nil {
		return "down"
	}
	return n.Role
}

// lag returns how many state changes node id is behind the leader it
// follows, and false if the node is down, knows no leader or its leader is
// down. Commits of two nodes are read at slightly different times, so a
// node that looks ahead of its leader has a lag of 0.
func lag(s *kms.ClusterStatusResponse, id int) (uint64, bool) {
	n, ok := s.NodesUp[id]
	if !ok || n == nil || n.LeaderID < 0 {
		return 0, false
	}
	leader, ok := s.NodesUp[n.LeaderID]
	if !ok || leader == nil {
		return 0, false
	}
	if leader.Commit <= n.Commit {
		return 0, true
	}
	return leader.Commit - n.Commit, true
}

// clusterStatusJSON is the JSON form of stat: every node, up or down, by
// ID. Names are those of the protobuf JSON of ServerStatusResponse;
// durations are in its form too, seconds with an "s" suffix.
type clusterStatusJSON struct {
	Up    int              `json:"nodes_up"`
	Total int              `json:"nodes_total"`
	Nodes []nodeStatusJSON `json:"nodes"`
}

type nodeStatusJSON struct {
	ID                int               `json:"node_id"`
	Host              string            `json:"host"`
	State             string            `json:"state"` // Leader, Follower, Candidate or down
	Version           string            `json:"version,omitempty"`
	APIVersion        string            `json:"api_version,omitempty"`
	Uptime            string            `json:"uptime,omitempty"`
	LeaderID          *int              `json:"leader_id,omitempty"` // -1: no leader
	Commit            *uint64           `json:"commit,omitempty"`
	Lag               *uint64           `json:"lag,omitempty"`
	LastHeartbeat     string            `json:"last_heartbeat,omitempty"`
	HeartbeatInterval string            `json:"heartbeat_interval,omitempty"`
	ElectionTimeout   string            `json:"election_timeout,omitempty"`
	Nodes             map[string]string `json:"nodes,omitempty"` // this node's cluster definition: ID → host
	OS                string            `json:"sys_os,omitempty"`
	Arch              string            `json:"sys_cpu_arch,omitempty"`
	CPUs              uint              `json:"sys_cpu_num,omitempty"`
	UsableCPUs        uint              `json:"sys_cpu_used,omitempty"`
	HeapInUse         uint64            `json:"sys_mem_heap_used,omitempty"`
	StackInUse        uint64            `json:"sys_mem_stack_used,omitempty"`
	// The HSM fields, under the JSON names of GET /v1/health/status;
	// absent for servers that do not send them.
	HSMs           []string `json:"hsm,omitempty"`           // HSMs that seal the root key
	ConfiguredHSMs []string `json:"hsm_active,omitempty"`    // HSMs the node is configured with
	UnsealedWith   string   `json:"unsealed_with,omitempty"` // the HSM the node unsealed with
}

// clusterView returns the JSON of stat; hsms holds the HSM fields of the
// nodes that sent them.
func clusterView(s *kms.ClusterStatusResponse, hsms map[int]nodeHSMs) clusterStatusJSON {
	ids := nodeIDs(s)
	v := clusterStatusJSON{Total: len(ids), Nodes: make([]nodeStatusJSON, 0, len(ids))}
	for _, id := range ids {
		nv := nodeStatusJSON{ID: id, Host: nodeHost(s, id), State: nodeState(s, id)}
		if n, ok := s.NodesUp[id]; ok && n != nil {
			v.Up++
			leaderID, commit := n.LeaderID, n.Commit
			nv.Version = n.Version
			nv.APIVersion = n.APIVersion
			nv.Uptime = jsonDuration(n.UpTime)
			nv.LeaderID = &leaderID
			nv.Commit = &commit
			if l, ok := lag(s, id); ok {
				nv.Lag = &l
			}
			nv.LastHeartbeat = jsonDuration(n.LastHeartbeat)
			nv.HeartbeatInterval = jsonDuration(n.HeartbeatInterval)
			nv.ElectionTimeout = jsonDuration(n.ElectionTimeout)
			nv.Nodes = make(map[string]string, len(n.Nodes))
			for id, host := range n.Nodes {
				nv.Nodes[strconv.Itoa(id)] = host
			}
			nv.OS, nv.Arch = n.OS, n.CPUArch
			nv.CPUs, nv.UsableCPUs = n.CPUs, n.UsableCPUs
			nv.HeapInUse, nv.StackInUse = n.HeapMemInUse, n.StackMemInUse
			h := hsms[id]
			nv.HSMs, nv.ConfiguredHSMs, nv.UnsealedWith = h.Sealing, h.Configured, h.UnsealedWith
		}
		v.Nodes = append(v.Nodes, nv)
	}
	return v
}

// jsonDuration formats d as the protobuf JSON does: seconds with an "s"
// suffix, e.g. "1.5s".
func jsonDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// ANSI colours of the stat bullets.
const (
	colorGreen  = "\x1b[32m"
	colorYellow = "\x1b[33m"
	colorRed    = "\x1b[31m"
	colorReset  = "\x1b[0m"
)

// writeClusterStatus writes the text of stat: one block per node in ID
// order, then a summary line. hsms holds the HSM fields of the nodes that
// sent them; nodes without have no HSM lines. With color the bullets show
// the state.
func writeClusterStatus(w io.Writer, s *kms.ClusterStatusResponse, hsms map[int]nodeHSMs, color bool) error {
	bullet := func(c string) string {
		if !color {
			return "●"
		}
		return c + "●" + colorReset
	}
	line := func(label, value string) {
		if value == "" {
			value = "-"
		}
		fmt.Fprintf(w, "  %-9s %s\n", label, value)
	}

	ids := nodeIDs(s)
	var down []string
	hasLeader := false
	for _, id := range ids {
		host := nodeHost(s, id)
		n, up := s.NodesUp[id]
		if !up || n == nil {
			down = append(down, fmt.Sprintf("%d (%s)", id, host))
			fmt.Fprintf(w, "%s Node %d at %s\n", bullet(colorRed), id, host)
			line("State", "down")
			continue
		}
		c := colorGreen
		switch n.Role {
		case "Leader":
			hasLeader = true
		case "Follower":
		default:
			c = colorYellow
		}
		fmt.Fprintf(w, "%s Node %d at %s\n", bullet(c), id, host)
		line("Version", n.Version)
		line("Uptime", formatDuration(n.UpTime))
		line("State", n.Role)
		if n.LeaderID < 0 {
			line("Leader", "none")
		} else {
			line("Leader", "Node "+strconv.Itoa(n.LeaderID))
		}
		line("Commit", strconv.FormatUint(n.Commit, 10))
		if n.LastHeartbeat > 0 {
			line("Heartbeat", formatDuration(n.LastHeartbeat)+" ago")
		} else {
			line("Heartbeat", "")
		}
		if l, ok := lag(s, id); ok {
			line("Lag", strconv.FormatUint(l, 10))
		} else {
			line("Lag", "")
		}
		line("System", formatSystem(n))
		if h, ok := hsms[id]; ok && !h.empty() {
			line("HSM", formatHSMs(h))
			line("Sealed by", strings.Join(h.Sealing, ", "))
		}
	}

	up := len(ids) - len(down)
	var summary string
	switch {
	case len(ids) == 0:
		summary = "No nodes"
	case len(down) == 0 && hasLeader:
		summary = fmt.Sprintf("All [%d/%d] nodes are up ✔", up, len(ids))
	case len(down) == 0:
		summary = fmt.Sprintf("All [%d/%d] nodes are up, but none is the leader", up, len(ids))
	case len(down) == 1:
		summary = fmt.Sprintf("[%d/%d] nodes are up: node %s is down", up, len(ids), down[0])
	default:
		summary = fmt.Sprintf("[%d/%d] nodes are up: nodes %s are down", up, len(ids), strings.Join(down, ", "))
	}
	_, err := fmt.Fprintln(w, summary)
	return err
}

// formatHSMs returns e.g. "token-a (configured: token-a, hsm:aes256)": the
// HSM a node unsealed with and those it is configured with.
func formatHSMs(h nodeHSMs) string {
	s := h.UnsealedWith
	if s == "" {
		s = "-"
	}
	if len(h.Configured) > 0 {
		s += " (configured: " + strings.Join(h.Configured, ", ") + ")"
	}
	return s
}

// formatSystem returns e.g. "linux/amd64, 2 CPUs, heap 12 MiB".
func formatSystem(n *kms.ServerStatusResponse) string {
	var parts []string
	if n.OS != "" || n.CPUArch != "" {
		parts = append(parts, n.OS+"/"+n.CPUArch)
	}
	if n.CPUs > 0 {
		cpus := fmt.Sprintf("%d CPUs", n.CPUs)
		if n.CPUs == 1 {
			cpus = "1 CPU"
		}
		if n.UsableCPUs > 0 && n.UsableCPUs < n.CPUs {
			cpus += fmt.Sprintf(" (%d used)", n.UsableCPUs)
		}
		parts = append(parts, cpus)
	}
	if n.HeapMemInUse > 0 {
		parts = append(parts, "heap "+formatBytes(n.HeapMemInUse))
	}
	return strings.Join(parts, ", ")
}

// formatDuration formats d for people: "233ms", "42s", "5m", "3h5m",
// "2d3h".
func formatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < 10*time.Second:
		return strconv.FormatFloat(float64(d.Milliseconds())/1000, 'f', 1, 64) + "s"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 24*time.Hour:
		h, m := int(d.Hours()), int(d.Minutes())%60
		if m == 0 {
			return strconv.Itoa(h) + "h"
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		days, h := int(d.Hours())/24, int(d.Hours())%24
		if h == 0 {
			return strconv.Itoa(days) + "d"
		}
		return fmt.Sprintf("%dd%dh", days, h)
	}
}

// formatBytes formats n in binary units: "512 B", "12 MiB", "1.5 GiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	prec := 0
	if v < 10 {
		prec = 1
	}
	return strconv.FormatFloat(v, 'f', prec, 64) + " " + string("KMGTPE"[exp]) + "iB"
}
