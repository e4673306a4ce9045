package cli

import (
	"io"
	"runtime"

	"github.com/keep-kms/keep/internal/buildinfo"
	"github.com/spf13/cobra"
)

// versionJSON is the JSON form of the version command's output.
type versionJSON struct {
	Version string `json:"version"`
	Commit  string `json:"commit,omitempty"`
	Runtime string `json:"runtime"`
}

// versionCommand returns the version command: the build of this binary.
func (a *app) versionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of keep",
		Args:  argsRange(0, 0),
	}
	asJSON := addJSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v := versionJSON{
			Version: buildinfo.Version,
			Commit:  buildinfo.Commit,
			Runtime: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		}
		return output(cmd, *asJSON, v, func(w io.Writer) error {
			return writeDetails(w, []field{
				{"Version", v.Version},
				{"Commit", v.Commit},
				{"Runtime", v.Runtime},
			})
		})
	}
	return cmd
}
