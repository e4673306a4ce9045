package miniotest

import "syscall"

// sysProcAttr puts MinIO in its own process group (killed as a whole) and
// has the kernel kill it if the test process dies without cleaning up
// (a panic or a test timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
