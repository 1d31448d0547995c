//go:build !unix

package isolate

import "os/exec"

func setProcAttr(cmd *exec.Cmd) {}
