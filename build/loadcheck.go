package build

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"
)

// LoadCheckCommand is the hidden subcommand under which the server's own
// binary opens one artifact and exits: see LoadCheckMain.
const LoadCheckCommand = "__loadcheck"

// LoadChecker opens an artifact somewhere the server cannot be harmed,
// and reports whether it opened cleanly.
type LoadChecker func(ctx context.Context, path string) error

// ExecLoadCheck returns a LoadChecker that runs `exe __loadcheck PATH` in a
// child process bounded by timeout. exe must be a binary that calls
// LoadCheckMain for that command: the server itself, so that the child
// has the server's exact build. Opening a plugin runs its init functions;
// measured on Go 1.26, an init that panics inside plugin.Open makes every
// later plugin.Open in that process hang, and an init that blocks hangs
// its caller. In a child, both only cost the child. Its errors are
// *LoadCheckError.
func ExecLoadCheck(exe string, timeout time.Duration) LoadChecker {
	return func(ctx context.Context, path string) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, exe, LoadCheckCommand, path)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		switch {
		case ctx.Err() == context.DeadlineExceeded:
			return &LoadCheckError{Reason: fmt.Sprintf("opening it did not finish within %s: an init function blocks", timeout)}
		case err != nil:
			return summarize(out.String(), err)
		}
		return nil
	}
}

// LoadCheckError is a failed load check. Reason is the checker's own
// account, safe to show; Detail is what the plugin wrote (an init's panic
// value, its output), for operators only.
type LoadCheckError struct {
	Reason string
	Detail string
}

func (e *LoadCheckError) Error() string {
	if e.Detail == "" {
		return e.Reason
	}
	return e.Reason + ": " + e.Detail
}

// InitPanicked is the reason given for an artifact whose init function
// panicked while it was opened, in a load check or in the server.
const InitPanicked = "an init function panicked"

// loadCheckPrefix marks the line LoadCheckMain writes, telling it from
// whatever the plugin's init functions print.
const loadCheckPrefix = "plugind load check: "

// summarize explains a failed child from its output: an init's panic,
// a runtime crash, or LoadCheckMain's own report; failing those, its
// first line, which the plugin may have written.
func summarize(out string, err error) *LoadCheckError {
	var first string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if first == "" {
			first = line
		}
		if v, ok := strings.CutPrefix(line, "panic: "); ok {
			return &LoadCheckError{Reason: InitPanicked, Detail: v}
		}
		if v, ok := strings.CutPrefix(line, "fatal error: "); ok {
			return &LoadCheckError{Reason: "opening it crashed", Detail: v}
		}
		if v, ok := strings.CutPrefix(line, loadCheckPrefix); ok {
			return &LoadCheckError{Reason: v}
		}
	}
	if first != "" {
		return &LoadCheckError{Reason: "opening it failed", Detail: first}
	}
	return &LoadCheckError{Reason: "opening it failed: " + err.Error()}
}

// WriteLoadCheckFailure writes, for the parent's ExecLoadCheck, why the
// child could not open the artifact: the line summarize recognises among
// whatever the plugin's init functions print.
func WriteLoadCheckFailure(w io.Writer, reason string) {
	fmt.Fprintln(w, loadCheckPrefix+reason)
}
