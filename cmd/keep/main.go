// Command keep is the Keep key management server and its command line
// client. See internal/cli for the commands.
package main

import (
	"os"

	"github.com/keep-kms/keep/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
