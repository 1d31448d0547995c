//go:build !unix

package tasks

import "os"

// alive reports whether process pid exists: where there is no signal 0,
// finding the process is the check (on Windows it opens a handle).
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}
