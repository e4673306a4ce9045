package cli

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// guideCommand is a keep command line found in a Markdown file.
type guideCommand struct {
	line int      // of the file, where the command starts
	args []string // after "keep"
}

// TestOperationsGuide checks every keep command of docs/operations.md's
// code blocks (shell lines, systemd ExecStart= lines, Kubernetes command:
// lists) against the command tree: the command exists, its flags exist
// and parse, and it has as many arguments as it takes. Placeholders (HOST,
// k1:…) stand for arguments and pass as such. The guide cannot drift from
// the binary.
func TestOperationsGuide(t *testing.T) {
	cmds := guideCommands(t, "../../docs/operations.md")
	used := map[string]bool{}
	for _, c := range cmds {
		path, err := checkCommandLine(c.args)
		if err != nil {
			t.Errorf("docs/operations.md:%d: keep %s: %v", c.line, strings.Join(c.args, " "), err)
		}
		used[path] = true
	}
	t.Logf("checked %d keep command lines of docs/operations.md", len(cmds))
	// What the guide is for: deploying, backing up and restoring,
	// monitoring, repairing. A guide that lost these (or whose code blocks
	// the extraction no longer finds) fails here.
	for _, want := range []string{
		"keep server", "keep add", "keep stat", "keep backup", "keep restore", "keep edit", "keep rm",
		"keep config set", "keep logs", "keep identity", "keep add-identity", "keep import-kes",
	} {
		if !used[want] {
			t.Errorf("docs/operations.md shows no %q in a code block", want)
		}
	}
}

// checkCommandLine checks args (the words after "keep") against the
// command tree without running anything, and returns the command's path.
func checkCommandLine(args []string) (string, error) {
	root := (&app{getenv: func(string) string { return "" }}).rootCommand()
	cmd, rest, err := root.Find(args)
	if err != nil {
		return "", err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return cmd.CommandPath(), err
	}
	if cmd.HasSubCommands() && !cmd.Runnable() {
		return cmd.CommandPath(), fmt.Errorf("%s needs one of its subcommands", cmd.CommandPath())
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return cmd.CommandPath(), err
	}
	return cmd.CommandPath(), nil
}

// execKey is the key of a systemd Exec line: ExecStart=, ExecStartPost=, …
var execKey = regexp.MustCompile(`^Exec[A-Za-z]*=`)

// isKeep reports whether a command's first word runs keep: keep on the
// PATH, ./keep, or keep in a bin directory (not a path that merely ends
// in keep, such as a data directory).
func isKeep(w string) bool {
	return w == "keep" || w == "./keep" || strings.HasSuffix(w, "/bin/keep")
}

// yamlCommand is a Kubernetes container's command: ["keep", …].
var yamlCommand = regexp.MustCompile(`^\s*(?:- )?command:\s*\[(.*)\]\s*$`)

// guideCommands returns the keep command lines of the code blocks of the
// Markdown file at path.
func guideCommands(t *testing.T, path string) []guideCommand {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return extractCommands(string(data))
}

// extractCommands returns the keep command lines of the code blocks of a
// Markdown text: shell lines (continued with \, split at pipes, && and ;,
// after any VAR=value prefix), ExecStart= lines and YAML command: lists.
func extractCommands(markdown string) []guideCommand {
	var cmds []guideCommand
	inCode := false
	s := bufio.NewScanner(strings.NewReader(markdown))
	n, start := 0, 0
	var pending string
	for s.Scan() {
		n++
		line := s.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode, pending = !inCode, ""
			continue
		}
		if !inCode {
			continue
		}
		if pending == "" {
			start = n
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending += cont + " "
			continue
		}
		line, pending = pending+line, ""
		if m := yamlCommand.FindStringSubmatch(line); m != nil {
			var words []string
			for _, w := range strings.Split(m[1], ",") {
				words = append(words, strings.Trim(strings.TrimSpace(w), `"'`))
			}
			if len(words) > 0 && isKeep(words[0]) {
				cmds = append(cmds, guideCommand{start, words[1:]})
			}
			continue
		}
		for _, words := range shellCommands(line) {
			if len(words) > 0 && isKeep(words[0]) {
				cmds = append(cmds, guideCommand{start, words[1:]})
			}
		}
	}
	return cmds
}

// shellCommands splits a shell line into its simple commands, each as
// its words: quotes are removed, a comment ends the line, redirections
// are dropped, and leading VAR=value assignments and ExecStart= prefixes
// are skipped.
func shellCommands(line string) [][]string {
	var (
		cmds    [][]string
		words   []string
		word    strings.Builder
		inWord  bool
		quote   rune
		skipOne bool // the next word is a redirection's target
	)
	endWord := func() {
		if !inWord {
			return
		}
		w := word.String()
		word.Reset()
		inWord = false
		switch {
		case skipOne:
			skipOne = false
		case strings.HasPrefix(w, ">") || strings.HasPrefix(w, "<") || strings.HasPrefix(w, "2>"):
			// A redirection; "> FILE" also takes the next word.
			skipOne = w == ">" || w == ">>" || w == "<" || w == "2>"
		case len(words) == 0 && execKey.MatchString(w):
			if rest := strings.TrimLeft(execKey.ReplaceAllString(w, ""), "-@+!:"); rest != "" {
				words = append(words, rest)
			}
		case len(words) == 0 && isAssignment(w):
		default:
			words = append(words, w)
		}
	}
	endCommand := func() {
		endWord()
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
		words = nil
	}
	runes := []rune(line)
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				word.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == '#' && !inWord:
			endCommand()
			return cmds
		case r == ' ' || r == '\t':
			endWord()
		case r == '|' || r == ';' || r == '&':
			// |, ||, &&, ; and & end a command.
			endCommand()
			if i+1 < len(runes) && runes[i+1] == r {
				i++
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	endCommand()
	return cmds
}

// isAssignment reports whether w is a shell variable assignment, NAME=value.
func isAssignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	return ok && name != "" && strings.IndexFunc(name, func(r rune) bool {
		return !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9')
	}) < 0
}

func TestExtractCommands(t *testing.T) {
	md := "Prose with `keep nope` is not a code block.\n" +
		"```sh\n" +
		"keep stat -k            # every node\n" +
		"MINIO_KMS_SERVER=https://a:7373 keep add b:7373 && keep ls\n" +
		"keep logs --audit \\\n  --json node1 | grep KEY > out.txt\n" +
		"export X=1; ./keep config set 'log.level=debug'\n" +
		"systemctl restart keep\n" +
		"```\n" +
		"```ini\n" +
		"ExecStart=/usr/local/bin/keep backup /var/backups/keep/\n" +
		"ExecStartPost=/usr/bin/find /var/backups/keep -mtime +30 -delete\n" +
		"```\n" +
		"```yaml\n" +
		"    command: [\"keep\", \"backup\", \"/backup/\"]\n" +
		"```\n"
	var got []string
	for _, c := range extractCommands(md) {
		got = append(got, fmt.Sprintf("%d: %s", c.line, strings.Join(c.args, " ")))
	}
	want := []string{
		"3: stat -k",
		"4: add b:7373",
		"4: ls",
		"5: logs --audit --json node1",
		"7: config set log.level=debug",
		"11: backup /var/backups/keep/",
		"15: backup /backup/",
	}
	if !slices.Equal(got, want) {
		t.Errorf("extracted\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCheckCommandLine checks that the guide's check refuses what the
// binary would refuse as a command line.
func TestCheckCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"backup", "/var/backups/keep/"}, true},
		{[]string{"edit", "node1", "--rm", "2", "--rm", "3"}, true},
		{[]string{"config", "set", "metrics.auth=public"}, true},
		{[]string{"--soft-hsm"}, true},
		{[]string{"logs", "--audit", "--json", "node2:7373"}, true},
		{[]string{"backup", "--compress"}, false},        // no such flag
		{[]string{"restor", "file"}, false},              // no such command
		{[]string{"edit", "node1", "--rm", "n2"}, false}, // --rm takes IDs
		{[]string{"edit"}, false},                        // HOST missing
		{[]string{"restore", "a", "b", "c"}, false},      // too many arguments
		{[]string{"config"}, false},                      // a subcommand missing
		{[]string{"config", "sett", "a=b"}, false},       // no such subcommand
	} {
		if _, err := checkCommandLine(tc.args); (err == nil) != tc.ok {
			t.Errorf("keep %s: %v, want ok=%v", strings.Join(tc.args, " "), err, tc.ok)
		}
	}
}
