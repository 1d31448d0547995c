package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	plugbuild "github.com/plugind/plugind/build"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/internal/stats"
	"github.com/plugind/plugind/isolate"
	"github.com/plugind/plugind/loader"
)

func TestExecToHealthy(t *testing.T) {
	tests := []struct {
		name, log string
		want      []time.Duration
		err       string
	}{
		{
			name: "two starts among other lines",
			log: `{"level":"info","plugin":"v","pid":10,"exec_to_healthy":19.75,"time":"2026-11-30T04:50:54Z","message":"plugin process started"}
{"level":"info","message":"request","path":"/_PLUGIN/v/V"}
{"level":"info","plugin":"other","pid":11,"exec_to_healthy":500,"message":"plugin process started"}
{"level":"info","plugin":"v","pid":12,"exec_to_healthy":32.1,"message":"plugin process started"}
`,
			want: []time.Duration{19750 * time.Microsecond, 32100 * time.Microsecond},
		},
		{name: "no start", log: `{"level":"info","message":"request"}` + "\n", err: "no start of plugin v"},
		{name: "no duration", log: `{"plugin":"v","message":"plugin process started"}` + "\n", err: "no exec_to_healthy"},
		{name: "not JSON", log: `plugin process started` + "\n", err: "server log"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "server.log")
			if err := os.WriteFile(path, []byte(tt.log), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := execToHealthy(path, "v")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("%v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestExecToHealthyOfRealStarts reads the log of real plugin processes,
// started by package isolate as a server with isolation = "process"
// starts them, into a JSON log as the server writes it: the hand-written
// lines above would pass whatever isolate logs, so a renamed event or
// field, or another unit, fails here rather than in make bench.
func TestExecToHealthyOfRealStarts(t *testing.T) {
	const processes = 2
	src := filepath.Join(plugintest.PluginPath(t, "hello"), "src")
	logPath := filepath.Join(t.TempDir(), "server.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log := zerolog.New(f).With().Timestamp().Logger()
	p, err := plugbuild.New(t.Context(), plugbuild.Options{SrcDir: src, CacheDir: plugintest.CacheDir(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	l, err := loader.New(loader.Options{Pipeline: p, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	m, err := isolate.New(isolate.Options{
		Find: isolate.SourceFinder(l), ModuleDir: l.ModuleDir(), CacheDir: plugintest.CacheDir(),
		BuildWait: plugintest.BuildWait, Processes: func(string) int { return processes }, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	begun := time.Now()
	h, err := m.Resolve(t.Context(), "hello", "Hello", "GET") // builds, and starts the processes
	if err != nil || h == nil {
		t.Fatalf("resolving hello in a process: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	bound := time.Since(begun)

	starts, err := execToHealthy(logPath, "hello")
	if err != nil {
		data, _ := os.ReadFile(logPath)
		t.Fatalf("%v\n%s", err, data)
	}
	if len(starts) != processes {
		t.Fatalf("%d starts read, want %d: %v", len(starts), processes, starts)
	}
	for _, d := range starts {
		if d <= 0 || d > bound { // milliseconds read as such, not as seconds or nanoseconds
			t.Errorf("exec -> healthy %s: want within (0, %s], the time the start took", d, bound)
		}
	}
	t.Logf("exec -> healthy: %v", starts)
}

// TestDescendants: a child of a child is found, and what has exited is not.
func TestDescendants(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc: Linux only")
	}
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); len(pids) < 2; {
		var err error
		if pids, err = descendants(os.Getpid()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("descendants %v: want the shell and its sleep", pids)
		}
		time.Sleep(10 * time.Millisecond) // polling until the shell has started sleep, with a bound
	}
	for _, pid := range pids[1:] { // not left behind when the shell is killed
		if p, err := os.FindProcess(pid); err == nil {
			defer p.Kill()
		}
	}
	if len(pids) != 2 || pids[0] != cmd.Process.Pid {
		t.Fatalf("descendants %v: want the shell %d, then its sleep", pids, cmd.Process.Pid)
	}
	if got, err := stats.RSS(pids[1]); err != nil || got <= 0 {
		t.Fatalf("RSS of the sleep: %d, %v", got, err)
	}
}
