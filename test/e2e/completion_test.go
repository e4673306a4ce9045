package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keep-kms/keep/test/aptget"
	"github.com/keep-kms/keep/test/testnode"
)

// bashCompletion is the bash-completion library, whose functions the
// script of `keep completion bash` calls, where Debian installs it.
const bashCompletion = "/usr/share/bash-completion/bash_completion"

// TestCompletion checks that keep --help lists the completion command and
// `keep completion SHELL` for every shell: each
// prints a script for keep; bash, and zsh and fish where installed, parse
// theirs; and bash, with the script and bash-completion loaded as in an
// interactive shell, completes commands and arguments by asking the keep
// binary (keep __complete), as a user's TAB does.
func TestCompletion(t *testing.T) {
	t.Parallel()
	marks := map[string]string{
		"bash":       "__start_keep",
		"zsh":        "#compdef keep",
		"fish":       "complete -c keep",
		"powershell": "Register-ArgumentCompleter",
	}
	if help := cliOK(t, nil, "--help"); !strings.Contains(help, "\n  completion ") {
		t.Errorf("keep --help does not list the completion command:\n%s", help)
	}
	dir := t.TempDir()
	for shell, mark := range marks {
		out := cliOK(t, nil, "completion", shell)
		if !strings.Contains(out, mark) {
			t.Errorf("keep completion %s: no %q in the script", shell, mark)
		}
		file := filepath.Join(dir, "keep."+shell)
		if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		check := map[string][]string{"bash": {"-n"}, "zsh": {"-n"}, "fish": {"--no-execute"}}[shell]
		if check == nil {
			continue
		}
		if _, err := exec.LookPath(shell); err != nil {
			if shell == "bash" {
				t.Fatal("bash not found")
			}
			t.Logf("%s is not installed: its script is not parsed", shell)
			continue
		}
		if out, err := exec.Command(shell, append(check, file)...).CombinedOutput(); err != nil {
			t.Errorf("%s %s keep.%s: %v\n%s", shell, strings.Join(check, " "), shell, err, out)
		}
	}

	aptget.Need(t, bashCompletion, "bash-completion")
	// The script runs "keep __complete …": keep must be on the PATH.
	bin := t.TempDir()
	if err := os.Symlink(testnode.Binary(t), filepath.Join(bin, "keep")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"keep add-", []string{"add-enclave", "add-hsm", "add-identity", "add-key", "add-policy"}},
		{"keep completion ", []string{"bash", "fish", "powershell", "zsh"}},
		{"keep ls-key --j", []string{"--json"}},
	} {
		script := fmt.Sprintf(`source %s; source %s
COMP_LINE=%q; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
__start_keep keep "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%%s\n' "${COMPREPLY[@]}"`, bashCompletion, filepath.Join(dir, "keep.bash"), tc.line)
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = append(testnode.BaseEnv(t.TempDir()), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.Output() // stderr: compopt outside a real completion complains
		if err != nil {
			t.Fatalf("completing %q: %v", tc.line, err)
		}
		got := strings.Fields(string(out))
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("completing %q: %q, want %q", tc.line, got, tc.want)
		}
	}
}
