package cli

import (
	"io"
	"runtime"

	"github.com/keep-kms/keep/internal/buildinfo"
	"github.com/keep-kms/keep/internal/hsm"
	"github.com/spf13/cobra"
)

// versionJSON is the JSON form of the version command's output.
type versionJSON struct {
	Version   string `json:"version"`
	Commit    string `json:"commit,omitempty"`
	Date      string `json:"date,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	License   string `json:"license"`
	FIPS140   bool   `json:"fips140"`
	PKCS11    bool   `json:"pkcs11"`
}

// versionCommand returns the version command: the build of this binary.
func (a *app) versionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, build and licence of keep",
		Long: `Print the version, commit and commit date this binary was built from, the
Go release that built it, its licence, whether it runs in Go's FIPS 140-3
mode (GODEBUG=fips140=on) and whether it can load PKCS#11 modules (only
a binary built with cgo can).`,
		Args: argsRange(0, 0),
	}
	asJSON := addJSONFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v := versionJSON{
			Version:   buildinfo.Version,
			Commit:    buildinfo.Commit,
			Date:      buildinfo.Date,
			GoVersion: buildinfo.GoVersion(),
			Platform:  runtime.GOOS + "/" + runtime.GOARCH,
			License:   buildinfo.License,
			FIPS140:   buildinfo.FIPS140(),
			PKCS11:    hsm.PKCS11Available,
		}
		return output(cmd, *asJSON, v, func(w io.Writer) error {
			return writeDetails(w, []field{
				{"Version", v.Version},
				{"Commit", v.Commit},
				{"Date", v.Date},
				{"Go", v.GoVersion + " " + v.Platform},
				{"License", v.License},
				{"FIPS 140-3", yesNo(v.FIPS140)},
				{"PKCS#11", yesNo(v.PKCS11)},
			})
		})
	}
	return cmd
}
