package testnode

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a program a test runs in the background, started and stopped
// as often as the test likes: keep servers (Node) and other servers a test
// needs (MinIO). Each start writes its output to new files in a directory
// of logs, so that a failing test can show every run.
type Process struct {
	label  string // names the program in log headings, e.g. "node 127.0.0.2:7373"
	logDir string

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{} // closed when the current process has exited
	lastExit int           // exit code of the last process that ended, -1 if killed by a signal
	starts   int
	stdout   string // output files of the current (or last) process
	stderr   string
	logs     []string // every output file written so far
}

// NewProcess returns a Process whose output goes to files in logDir.
func NewProcess(label, logDir string) *Process {
	return &Process{label: label, logDir: logDir}
}

// Start starts cmd in its own process group (keeping the rest of its
// SysProcAttr), its stdout and stderr going to new files (one file for both
// when combined). It returns a channel closed
// when the process exits.
func (p *Process) Start(cmd *exec.Cmd, combined bool) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exitedLocked() {
		return nil, errors.New("start: the process is still running")
	}
	p.starts++
	stdoutPath := filepath.Join(p.logDir, fmt.Sprintf("stdout.%d.log", p.starts))
	stderrPath := filepath.Join(p.logDir, fmt.Sprintf("stderr.%d.log", p.starts))
	if combined {
		stdoutPath = filepath.Join(p.logDir, fmt.Sprintf("output.%d.log", p.starts))
		stderrPath = stdoutPath
	}
	stdout, err := os.Create(stdoutPath)
	if err != nil {
		return nil, err
	}
	stderr := stdout
	if !combined {
		if stderr, err = os.Create(stderrPath); err != nil {
			stdout.Close()
			return nil, err
		}
	}
	closeFiles := func() {
		stdout.Close()
		if !combined {
			stderr.Close()
		}
	}
	p.logs = append(p.logs, stdoutPath)
	if !combined {
		p.logs = append(p.logs, stderrPath)
	}
	p.stdout, p.stderr = stdoutPath, stderrPath

	cmd.Stdout, cmd.Stderr = stdout, stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // so that Kill reaches its children too
	if err := cmd.Start(); err != nil {
		closeFiles()
		return nil, fmt.Errorf("start %s: %w", p.label, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		cmd.Wait()
		closeFiles()
		p.mu.Lock()
		p.lastExit = cmd.ProcessState.ExitCode()
		p.mu.Unlock()
		close(done)
	}()
	return done, nil
}

func (p *Process) exitedLocked() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Running reports whether the process is running.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !p.exitedLocked()
}

// PID is the process ID of the running process, 0 if none runs.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.exitedLocked() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Stop sends SIGTERM and waits up to timeout for the process to exit; then
// it kills it and returns false.
func (p *Process) Stop(timeout time.Duration) bool {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		p.Kill()
		return false
	}
}

// Kill kills the process group and waits for the process to exit.
func (p *Process) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

// Wait waits up to timeout for the process to exit and returns its exit
// code; ok is false if it still runs.
func (p *Process) Wait(timeout time.Duration) (code int, ok bool) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return 0, false
	}
	select {
	case <-done:
		return p.ExitCode(), true
	case <-time.After(timeout):
		return 0, false
	}
}

// ExitCode is the exit code of the last process that ended, -1 if it was
// killed by a signal.
func (p *Process) ExitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastExit
}

// Stdout is what the current (or last) process wrote to stdout so far (with
// stderr, if combined). A process that re-executes itself keeps writing to
// the same file.
func (p *Process) Stdout() string {
	p.mu.Lock()
	path := p.stdout
	p.mu.Unlock()
	return readFile(path)
}

// Stderr is what the current (or last) process wrote to stderr so far.
func (p *Process) Stderr() string {
	p.mu.Lock()
	path := p.stderr
	p.mu.Unlock()
	return readFile(path)
}

// Logs returns every output file of the process, oldest first, each headed
// by its name. Long files are cut to their last 8 KiB, so that a failing
// test's own messages stay in view above them.
func (p *Process) Logs() string {
	var b strings.Builder
	for _, path := range p.logFiles() {
		fmt.Fprintf(&b, "==> %s (%s)\n%s\n", filepath.Base(path), p.label, Tail(readFile(path), 8<<10))
	}
	return b.String()
}

// raceWarning starts each report of the race detector.
const raceWarning = "WARNING: DATA RACE"

// RaceReports returns what the race detector reported in the process's
// output, from its first report on; "" if it reported nothing (or keep was
// built without it).
func (p *Process) RaceReports() string {
	var b strings.Builder
	for _, path := range p.logFiles() {
		if _, report, ok := strings.Cut(readFile(path), raceWarning); ok {
			fmt.Fprintf(&b, "==> %s (%s)\n%s%s\n", filepath.Base(path), p.label, raceWarning, report)
		}
	}
	return b.String()
}

// LogFiles returns the paths of every output file the process wrote,
// oldest first: tests read whole logs (Logs cuts them).
func (p *Process) LogFiles() []string { return p.logFiles() }

// logFiles returns the paths of the process's output files, oldest first.
func (p *Process) logFiles() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// Tail returns the end of s, at most max bytes, marked as cut if it is.
func Tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "…[cut]…" + s[len(s)-max:]
}

func readFile(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}
