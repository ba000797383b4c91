package testcluster

import "syscall"

// sysProcAttr makes the kernel SIGKILL the broker if the test process dies
// without running its cleanups (e.g. a test binary timeout panic).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
