//go:build !linux

package miniotest

import "syscall"

// sysProcAttr puts MinIO in its own process group (killed as a whole).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
