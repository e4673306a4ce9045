package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/minio/kms-go/kms"
	"github.com/spf13/cobra"
)

const (
	// restartTimeout bounds a restart request. A cluster-wide restart
	// answers once the peers are back, which the server waits for up to
	// 15 s.
	restartTimeout = time.Minute

	// restartWait is how long restart waits for restarted nodes to be
	// up again.
	restartWait = 30 * time.Second
)

func (a *app) restartCommand() *cobra.Command {
	var hosts []string
	cmd := &cobra.Command{
		Use:   "restart [HOST[:PORT]...]",
		Short: "Restart every node of the cluster, or the given nodes",
		Long: `Restart every node of the cluster, or only the nodes at HOST[:PORT] (default
port ` + DefaultPort + `), and wait until they are up again. A restarted node runs its
binary again and so reloads its configuration and environment.

Without HOST the server in MINIO_KMS_SERVER restarts its peers, waits for
them, and then restarts itself. Given HOSTs are restarted one after the
other, each once the one before is back, so a cluster keeps its majority.

Not supported on Windows.`,
		Example: `  keep restart
  keep restart node1.example.net node2.example.net:8443`,
		Args: argsRange(0, -1),
		PreRunE: func(_ *cobra.Command, args []string) error {
			if runtime.GOOS == "windows" {
				return errors.New("restart is not supported on Windows")
			}
			hosts = hosts[:0]
			for _, arg := range args {
				h, err := hostArg(arg)
				if err != nil {
					return err
				}
				hosts = append(hosts, h)
			}
			return nil
		},
	}
	f := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := a.client(f)
		if err != nil {
			return err
		}
		hc, err := a.httpClient(f)
		if err != nil {
			return err
		}
		ctx, out := cmd.Context(), cmd.OutOrStdout()
		if len(hosts) > 0 {
			for _, host := range hosts {
				sent := time.Now()
				if err := postRestart(ctx, hc, host, true); err != nil {
					return err
				}
				if err := waitRestarted(ctx, c, sent, host); err != nil {
					return err
				}
				fmt.Fprintf(out, "Restarted %s\n", host)
			}
			return nil
		}

		// The whole cluster, through the first endpoint that can be
		// reached: a request that could not be sent restarted nothing.
		list := endpoints(a.getenv(EnvServer))
		for i, ep := range list {
			host := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(ep, "https://"), "http://"), "/")
			sent := time.Now()
			err := postRestart(ctx, hc, host, false)
			if err != nil && notSent(err) && i < len(list)-1 {
				continue
			}
			if err != nil {
				return err
			}
			if err := waitRestarted(ctx, c, sent, ""); err != nil {
				return err
			}
			_, err = fmt.Fprintf(out, "Restarted every node of the cluster (through %s)\n", host)
			return err
		}
		return nil
	}
	return cmd
}

// httpClient returns an HTTP client for requests kms-go has no method for,
// authenticated and verified as the kms-go client of a.client.
func (a *app) httpClient(f *clientFlags) (*http.Client, error) {
	key, err := a.apiKey(f)
	if err != nil {
		return nil, err
	}
	cert, err := kms.GenerateCertificate(key, nil)
	if err != nil {
		return nil, err
	}
	conf := clientTLS(f)
	conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:     conf,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   true,
	}}, nil
}

// postRestart asks the server at host to restart, itself only with self,
// otherwise the whole cluster. A 200 means the server has taken on the
// restart; that the connection breaks after it, as the server goes down,
// is expected.
func postRestart(ctx context.Context, hc *http.Client, host string, self bool) error {
	ctx, cancel := context.WithTimeout(ctx, restartTimeout)
	defer cancel()
	url := "https://" + host + "/v1/debug/restart"
	if self {
		url += "?self"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return &kms.HostError{Host: host, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return &kms.HostError{Host: host, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &kms.HostError{Host: host, Err: readAPIError(resp)}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // a reset now is no failure
	return nil
}

// readAPIError returns the error a server sent as a non-200 reply: JSON
// {"message": …}, or text.
func readAPIError(resp *http.Response) kms.Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 5<<10))
	msg := strings.TrimSpace(string(body))
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		msg = e.Message
	}
	return kms.Error{Code: resp.StatusCode, Err: msg}
}

// notSent reports whether err means a request never reached the server:
// the connection could not be made.
func notSent(err error) bool {
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// waitRestarted waits until the node at host, or with host "" every node
// of the cluster, answers in the cluster status with an uptime that
// shows it restarted after sent. It returns nil at once if host is not a
// node of the cluster the client talks to, since then it cannot tell.
func waitRestarted(ctx context.Context, c *kms.Client, sent time.Time, host string) error {
	ctx, cancel := context.WithTimeout(ctx, restartWait)
	defer cancel()
	var pending []string
	for {
		s, err := c.ClusterStatus(ctx, &kms.ClusterStatusRequest{})
		if err == nil {
			if pending = notRestarted(s, time.Since(sent), host); pending == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return ctx.Err()
			}
			if pending == nil {
				return fmt.Errorf("the restart was requested, but no status of the cluster could be read within %v: %v", restartWait, err)
			}
			return fmt.Errorf("the restart was requested, but after %v %s", restartWait, strings.Join(pending, ", "))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// notRestarted describes the nodes in s, or only the node at host if host
// is not "", that are down or have been up longer than since; it returns
// nil if there are none. A host that is not in s is not waited for.
func notRestarted(s *kms.ClusterStatusResponse, since time.Duration, host string) []string {
	pending := []string{}
	for _, id := range nodeIDs(s) {
		h := nodeHost(s, id)
		if host != "" && h != host {
			continue
		}
		if n, ok := s.NodesUp[id]; !ok || n == nil {
			pending = append(pending, fmt.Sprintf("node %d (%s) is down", id, h))
		} else if n.UpTime >= since {
			pending = append(pending, fmt.Sprintf("node %d (%s) has not restarted (up for %s)", id, h, formatDuration(n.UpTime)))
		}
	}
	if len(pending) == 0 {
		return nil
	}
	return slices.Clip(pending)
}
