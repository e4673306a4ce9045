package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// healthCommand returns the health command: a probe of a node's public
// health endpoints, for the container image's HEALTHCHECK and for scripts,
// where no curl may be at hand.
func (a *app) healthCommand() *cobra.Command {
	var (
		ready, write bool
		timeout      time.Duration
		insecure     bool
	)
	cmd := &cobra.Command{
		Use:   "health [HOST[:PORT]]",
		Short: "Check that a node is live or ready (exit 0) or not (exit 1)",
		Long: `Ask the node at HOST[:PORT] (default: the first server in MINIO_KMS_SERVER)
whether it is live (GET /v1/health/live): the process serves HTTPS. With
--ready, whether it serves reads (GET /v1/health/ready), and with --write
also writes (it leads, or heard from the leader recently). Exits 0 if so,
1 if not. It needs no API key.

A node refuses client handshakes while it starts (opening its HSM, reading
its log) and while it stops, so a starting node is not live yet: give
health checks a start period.`,
		Example: `  keep health -k 127.0.0.1:7373             the container image's HEALTHCHECK
  keep health --ready node1.example.net`,
		Args: argsRange(0, 1),
		PreRunE: func(_ *cobra.Command, args []string) error {
			if write && !ready {
				return usageErrorf("--write is a flag of --ready")
			}
			_, err := a.nodeHost(args)
			return err
		},
	}
	cmd.Flags().BoolVar(&ready, "ready", false, "check that the node serves reads (GET /v1/health/ready)")
	cmd.Flags().BoolVar(&write, "write", false, "with --ready: check that it serves writes too")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	cmd.Flags().BoolVarP(&insecure, "insecure", "k", false, "skip verification of the server certificate (no credential is sent)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		host, _ := a.nodeHost(args)
		path, state := "/v1/health/live", "live"
		switch {
		case write:
			path, state = "/v1/health/ready?write", "ready for writes"
		case ready:
			path, state = "/v1/health/ready", "ready"
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
		defer cancel()
		// No client certificate: the health endpoints serve everyone,
		// and a probe should not need the API key.
		hc := &http.Client{Transport: &http.Transport{
			DialContext:       (&net.Dialer{Timeout: timeout}).DialContext,
			TLSClientConfig:   clientTLS(&clientFlags{insecure: insecure}),
			ForceAttemptHTTP2: true,
		}}
		defer hc.CloseIdleConnections()
		resp, err := sendNode(ctx, hc, http.MethodGet, host, path, "application/json", nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", host, state)
		return err
	}
	return cmd
}
