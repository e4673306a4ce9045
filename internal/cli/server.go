package cli

import (
	"context"
	"errors"

	"github.com/keep-kms/keep/internal/server"
	"github.com/spf13/cobra"
)

// EnvHSMKey is the environment variable holding the HSM key of a server.
const EnvHSMKey = "MINIO_KMS_HSM_KEY"

// serverCommand returns the server command, which runs a Keep node until
// SIGINT or SIGTERM.
func (a *app) serverCommand() *cobra.Command {
	var opts server.Options
	cmd := &cobra.Command{
		Use:   "server [DIR]",
		Short: "Start a Keep server",
		Long: `Start a Keep server that keeps its state in the data directory DIR.

The node's HSMs seal the cluster's root key. They are listed under hsm: in
the config file or, without one, come from the environment:
  ` + EnvHSMKey + `      a soft HSM key (create one with 'keep --soft-hsm'),
  or ` + EnvHSMKey + `_FILE  a file holding it (a systemd credential, a mounted Secret)
  KEEP_PKCS11_MODULE     a PKCS#11 token (create its key with 'keep --pkcs11'),
  with KEEP_PKCS11_TOKEN (or KEEP_PKCS11_SLOT), KEEP_PKCS11_KEY and the PIN in
  KEEP_PKCS11_PIN (or a file named by KEEP_PKCS11_PIN_FILE).
Every node needs one of the cluster's HSMs (see keep add-hsm). With --dev
the server keeps its state in memory, needs neither DIR nor an HSM and
listens on 127.0.0.1:7373.`,
		Example: `  keep server --dev
  ` + EnvHSMKey + `=hsm:aes256:… keep server /var/lib/keep --host node1.example.net:7373`,
		Args: argsRange(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Dir = args[0]
			}
			if opts.Dir == "" && !opts.Dev {
				return usageErrorf("server: give a data directory (keep server DIR) or use --dev for an in-memory server")
			}
			opts.Getenv = a.getenv
			opts.Stdout = cmd.OutOrStdout()

			err := server.Run(cmd.Context(), opts)
			switch {
			case errors.Is(err, server.ErrRestart):
				// Run has stopped the node; the process starts
				// over with the same arguments. Reexec returns
				// only if it cannot.
				return server.Reexec()
			case errors.Is(err, context.Canceled) && cmd.Context().Err() != nil:
				return nil // stopped by a signal: a clean shutdown
			}
			return err
		},
	}
	cmd.Flags().StringVar(&opts.Address, "address", "", "listen address IP:PORT (default 0.0.0.0:7373, 127.0.0.1:7373 with --dev)")
	cmd.Flags().StringVar(&opts.Host, "host", "", "HOST:PORT other nodes and clients reach this node at; must match the address used to add it to a cluster")
	cmd.Flags().StringVar(&opts.Seed, "seed", "", "HOST:PORT of the node that founds the cluster: any other node reports itself not ready until it has been added (keep add)")
	cmd.Flags().StringVar(&opts.ConfigFile, "config", "", "YAML configuration file")
	cmd.Flags().BoolVar(&opts.Dev, "dev", false, "start a development server with in-memory state")
	return cmd
}
