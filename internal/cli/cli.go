// Package cli implements the keep command line: the server, the soft HSM
// key generator, local identity computations and the client commands that
// manage enclaves, keys, policies and identities over the MinIO KMS API.
//
// Every client command talks to the servers listed in MINIO_KMS_SERVER with
// the kms-go client, authenticated by the API key from --api-key or
// MINIO_KMS_API_KEY. Errors are printed as one line, "keep: …", on stderr;
// the exit code is 1 for failures and 2 for usage errors.
//
// Output conventions: text is aligned columns (lists) or label/value lines
// (single objects), with "-" for empty values. --json prints the package's
// own view types (snake_case names as in the protobuf JSON, times in RFC
// 3339 UTC, identities as h1:…), never kms-go's structs, so the JSON stays
// stable; a command given one name prints an object, several an array, and
// list commands always an array. Secrets a command creates (API keys, HSM
// keys) go to stdout and the advice to keep them safe to stderr, so the
// output can be redirected into a file. Errors never repeat a secret.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes returned by Main.
const (
	ExitOK    = 0 // the command succeeded
	ExitError = 1 // the command failed
	ExitUsage = 2 // the command line was wrong
)

// Main runs the keep command line with args, the arguments without the
// program name, and returns the process exit code. It reads the environment
// and writes to os.Stdout and os.Stderr. SIGINT and SIGTERM cancel the
// running command; a second signal kills the process.
func Main(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore the default handling for a second signal
	}()

	return newApp().run(ctx, args)
}

// Command returns the keep command tree as a shell sees it, with cobra's
// completion command, for generating documentation from it: deploy/man
// writes the man pages with it.
func Command() *cobra.Command {
	root := newApp().rootCommand()
	root.InitDefaultCompletionCmd()
	return root
}

// newApp returns an app on the process's environment and standard streams.
func newApp() *app {
	return &app{
		getenv:    os.Getenv,
		lookupEnv: os.LookupEnv,
		stdin:     os.Stdin,
		stdout:    os.Stdout,
		stderr:    os.Stderr,
	}
}

// app holds what the commands take from the process: the environment and
// the standard streams. Tests replace them.
type app struct {
	getenv func(string) string
	// lookupEnv tells an unset variable from an empty one, for ${VAR} in a
	// KES config; nil: a variable is set if getenv returns non-empty.
	lookupEnv func(string) (string, bool)
	stdin     io.Reader
	// stdinTTY reports whether stdin is a terminal, to ask for
	// confirmation; nil: whether stdin is a terminal.
	stdinTTY func() bool
	stdout   io.Writer
	stderr   io.Writer
}

// run executes args and returns the exit code. Errors are reported on
// a.stderr as one line.
func (a *app) run(ctx context.Context, args []string) int {
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)

	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(a.stderr, "keep: "+oneLine(describeError(err)))
	if isUsageError(err) {
		return ExitUsage
	}
	return ExitError
}

// Command groups shown in "keep --help".
const (
	groupServer   = "server"
	groupCluster  = "cluster"
	groupEnclave  = "enclave"
	groupKey      = "key"
	groupPolicy   = "policy"
	groupIdentity = "identity"
)

// rootCommand builds the "keep" command with all its subcommands.
func (a *app) rootCommand() *cobra.Command {
	var (
		softHSM bool
		p11     *pkcs11Flags
	)
	root := &cobra.Command{
		Use:   "keep",
		Short: "Keep is a clustered key management server speaking the MinIO KMS API",
		Long: `Keep is a clustered key management server speaking the MinIO KMS API and
the KES API.

Client commands connect to the servers in MINIO_KMS_SERVER (comma-separated,
default https://localhost:7373) and authenticate with the API key in
MINIO_KMS_API_KEY or --api-key.`,
		Example: `  keep --soft-hsm                      create an HSM key for a new cluster
  keep --pkcs11 --module /usr/lib/softhsm/libsofthsm2.so --token keep --key root
                                       create an HSM key on a PKCS#11 token
  keep server --dev                    start an in-memory development server
  keep add-key my-key                  create a key in the default enclave`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q", args[0])
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf(", did you mean %q?", s[0])
			}
			return usageErrorf("%s (see 'keep --help')", msg)
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if p11.create {
				return a.createPKCS11Key(cmd, p11)
			}
			for _, name := range pkcs11FlagNames {
				if cmd.Flags().Changed(name) {
					return usageErrorf("--%s is a flag of --pkcs11", name)
				}
			}
			if softHSM {
				return a.printSoftHSMKey(cmd)
			}
			return cmd.Help()
		},
		SilenceErrors:              true,
		SilenceUsage:               true,
		SuggestionsMinimumDistance: 2,
	}
	root.Flags().BoolVar(&softHSM, "soft-hsm", false, "print a new software HSM key (hsm:aes256:…) and exit")
	p11 = addPKCS11Flags(root)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErrorf("%v (see '%s --help')", err, cmd.CommandPath())
	})

	root.AddGroup(
		&cobra.Group{ID: groupServer, Title: "Server:"},
		&cobra.Group{ID: groupCluster, Title: "Cluster:"},
		&cobra.Group{ID: groupEnclave, Title: "Enclaves:"},
		&cobra.Group{ID: groupKey, Title: "Keys:"},
		&cobra.Group{ID: groupPolicy, Title: "Policies:"},
		&cobra.Group{ID: groupIdentity, Title: "Identities:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add(groupServer, a.serverCommand())
	add(groupServer, a.nodeCommands()...)
	add(groupServer, a.healthCommand())
	add(groupCluster, a.clusterCommands()...)
	add(groupEnclave, a.enclaveCommands()...)
	add(groupKey, a.keyCommands()...)
	add(groupKey, a.importKESCommand())
	add(groupPolicy, a.policyCommands()...)
	add(groupIdentity, a.identityCommands()...)
	root.AddCommand(a.versionCommand())
	return root
}

// usageError is an error in the command line rather than in what the
// command did. It makes Main return ExitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// usageErrorf returns a usage error with a formatted message.
func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func isUsageError(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

// argsRange returns a cobra argument validator that accepts between min and
// max positional arguments; max < 0 means no upper bound. Violations are
// usage errors naming the expected form.
func argsRange(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < min:
			return usageErrorf("%s: missing argument; usage: %s", cmd.Name(), cmd.UseLine())
		case max >= 0 && len(args) > max:
			return usageErrorf("%s: too many arguments; usage: %s", cmd.Name(), cmd.UseLine())
		}
		return nil
	}
}

// exclusiveFlags returns a usage error if more than one of the named flags
// is set on cmd.
func exclusiveFlags(cmd *cobra.Command, names ...string) error {
	var set []string
	for _, n := range names {
		if cmd.Flags().Changed(n) {
			set = append(set, "--"+n)
		}
	}
	if len(set) > 1 {
		return usageErrorf("%s cannot be used together", strings.Join(set, " and "))
	}
	return nil
}

// oneLine folds a multi-line message into a single line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.TrimSpace(s)), " ")
}
