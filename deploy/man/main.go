// Command man writes the man pages of keep, one per command (keep.1,
// keep-add-key.1, …), generated from the commands' own help:
//
//	go run ./deploy/man DIR
//
// It is a separate program, not a keep command, so that the shipped binary
// does not link the man page renderer.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra/doc"

	"github.com/keep-kms/keep/internal/buildinfo"
	"github.com/keep-kms/keep/internal/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run ./deploy/man DIR")
		os.Exit(2)
	}
	if err := write(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "man:", err)
		os.Exit(1)
	}
}

// write creates dir and writes a page for every command into it.
func write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root := cli.Command()
	// Cobra stamps pages with the current time unless told otherwise, which
	// would make every generation differ; the pages carry the build's
	// version instead.
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{
		Section: "1",
		Source:  "Keep " + buildinfo.Version,
		Manual:  "Keep Manual",
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("generate man pages in %s: %w", dir, err)
	}
	return nil
}
