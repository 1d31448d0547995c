//go:build unix

package isolate

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the child in its own process group: a terminal's
// Ctrl-C reaches the server, which stops its children in order, not the
// children behind its back.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
