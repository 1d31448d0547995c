// Package childproc runs one child process for the test harnesses and
// benchmark programs (benchproc's plugind, haproxytest, pgtest, the fleet
// test): started with its output appended to a log file, its exit
// observed once by a goroutine of its own, polled for readiness while it
// runs, and stopped by a signal, killed if it outlives a bound.
//
// It uses the standard library only and builds wherever the programs do;
// where a signal cannot be sent (Windows has no SIGTERM), Stop kills.
package childproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// ErrExited is Stop's error for a process that had exited before it was
// asked to stop: something else ended it.
var ErrExited = errors.New("exited before it was stopped")

// Process is a started child process.
type Process struct {
	Name    string // in errors: "server", "haproxy", "postgres"
	Cmd     *exec.Cmd
	Started time.Time // just before the process started

	exited chan struct{} // closed once the process has exited
	err    error         // cmd.Wait's result, set before exited closes
}

// Start starts cmd, called name in errors, with its standard output and
// error appended to the file logPath (created if need be).
func Start(name string, cmd *exec.Cmd, logPath string) (*Process, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer log.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = log, log
	p := &Process{Name: name, Cmd: cmd, exited: make(chan struct{})}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the process ended (exec.Cmd.Wait's error): valid once
// Exited is closed.
func (p *Process) Err() error {
	<-p.exited
	return p.err
}

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Stop sends sig and waits up to limit for the process to exit; then, or
// if sig cannot be sent, it kills it, waits, and says so. A process that
// had already exited is ErrExited. Its exit status is Err's.
func (p *Process) Stop(sig os.Signal, limit time.Duration) error {
	if !p.Running() {
		return fmt.Errorf("%s %w (%v)", p.Name, ErrExited, p.err)
	}
	if err := p.Cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.Kill()
		return fmt.Errorf("stop %s: %w; killed it", p.Name, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(limit):
		p.Kill()
		return fmt.Errorf("%s still running %s after %v; killed it", p.Name, limit, sig)
	}
}

// Kill kills the process, if it is running, and waits for its exit.
func (p *Process) Kill() {
	if p.Running() {
		_ = p.Cmd.Process.Kill()
	}
	<-p.exited
}

// Poll calls try every interval, counted from the start of the one
// before, until it is done, the process exits or limit passes. try gets a
// context that ends with limit and returns done and, when done, nil or an
// error to give up with; when not done, why not (the last answer), which
// the error Poll returns ends with.
func (p *Process) Poll(ctx context.Context, limit, interval time.Duration, try func(context.Context) (done bool, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		done, err := try(ctx)
		if done {
			return err
		}
		if err == nil {
			err = errors.New("not done")
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited (%v); last %w", p.Name, p.err, err)
		case <-ctx.Done():
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w; last %w", ctx.Err(), err)
			}
			return fmt.Errorf("%s gave no expected answer within %s; last %w", p.Name, limit, err)
		case <-tick.C:
		}
	}
}
