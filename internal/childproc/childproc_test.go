package childproc

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes this test binary a child instead: "term" writes "up" to
// its log and exits 0 on SIGTERM, "deaf" writes "up" and ignores SIGTERM,
// "fail" exits 3 at once.
const childEnv = "CHILDPROC_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "term":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		os.Stdout.WriteString("up\n")
		<-ctx.Done()
	case "deaf":
		signal.Ignore(syscall.SIGTERM)
		os.Stdout.WriteString("up\n")
		select {}
	case "fail":
		os.Exit(3)
	}
}

// start starts this binary as a child of the given kind, its log in a
// temporary directory, killed at the test's end.
func start(t *testing.T, kind string) (*Process, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"="+kind)
	log := filepath.Join(t.TempDir(), "child.log")
	if err := os.WriteFile(log, []byte("earlier\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Start("child", cmd, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	return p, log
}

// up polls for the child's "up" in its log.
func up(log string) func(context.Context) (bool, error) {
	return func(context.Context) (bool, error) {
		data, err := os.ReadFile(log)
		return err == nil && strings.Contains(string(data), "up\n"), err
	}
}

func TestStopAndPoll(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM to send on Windows")
	}
	tests := []struct {
		kind    string
		limit   time.Duration
		stopErr string // "" for none
	}{
		{"term", 30 * time.Second, ""},
		{"deaf", 200 * time.Millisecond, "child still running 200ms after terminated; killed it"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			p, log := start(t, tt.kind)
			if err := p.Poll(t.Context(), 30*time.Second, 5*time.Millisecond, up(log)); err != nil {
				t.Fatalf("Poll: %v", err)
			}
			if data, _ := os.ReadFile(log); !strings.HasPrefix(string(data), "earlier\n") {
				t.Errorf("the log was not appended to: %q", data)
			}
			final := errors.New("final")
			if err := p.Poll(t.Context(), time.Second, time.Millisecond, func(context.Context) (bool, error) { return true, final }); err != final {
				t.Errorf("Poll: %v, want try's final error", err)
			}
			err := p.Stop(syscall.SIGTERM, tt.limit)
			if tt.stopErr == "" && err != nil || tt.stopErr != "" && (err == nil || err.Error() != tt.stopErr) {
				t.Fatalf("Stop: %v, want %q", err, tt.stopErr)
			}
			if p.Running() {
				t.Fatal("running after Stop")
			}
			if tt.stopErr == "" && p.Err() != nil {
				t.Errorf("exit after SIGTERM: %v, want status 0", p.Err())
			}
			if err := p.Stop(syscall.SIGTERM, time.Second); !errors.Is(err, ErrExited) {
				t.Errorf("second Stop: %v, want ErrExited", err)
			}
		})
	}
}

// TestPollEnds: Poll of a try never done ends when the child exits, or
// at its limit, saying which with the last answer.
func TestPollEnds(t *testing.T) {
	tests := []struct {
		kind  string
		limit time.Duration
		want  string
	}{
		{"fail", 30 * time.Second, "child exited (exit status 3); last not yet"},
		{"term", 50 * time.Millisecond, "child gave no expected answer within 50ms; last not yet"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			p, _ := start(t, tt.kind)
			err := p.Poll(t.Context(), tt.limit, 5*time.Millisecond, func(context.Context) (bool, error) {
				return false, errors.New("not yet")
			})
			if err == nil || err.Error() != tt.want {
				t.Errorf("Poll: %v, want %q", err, tt.want)
			}
		})
	}
	p, _ := start(t, "fail")
	<-p.Exited()
	if err := p.Stop(os.Kill, time.Second); !errors.Is(err, ErrExited) {
		t.Errorf("Stop after the exit: %v, want ErrExited", err)
	}
}
