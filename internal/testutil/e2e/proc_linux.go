package e2e

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd when the test process exits.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
