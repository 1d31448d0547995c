// Package benchproc is what the benchmark programs under internal/cmd
// (loadrun, lifebench) share to run plugind as a child process: their
// main, a plugin directory with an empty config file, a clean environment,
// free ports on 127.0.0.1, starting, polling and stopping the server (a
// childproc.Process), and the end of its log when something fails.
//
// It uses the standard library (and childproc) only and builds wherever
// the programs do (CGO_ENABLED=0, GOOS=windows); on Windows, which has no
// SIGTERM to send, Stop kills the server.
package benchproc

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/plugind/plugind/internal/childproc"
)

const (
	// StopTimeout is how long Stop waits after SIGTERM before it kills.
	StopTimeout = 30 * time.Second
	// MaxBody is the longest answer body Get reads.
	MaxBody = 1 << 20
)

// Main ends the program prog with status 2 and checkErr, or an error about
// arguments flag.Parse left over, if either; otherwise it runs run with a
// context that SIGINT and SIGTERM cancel, and ends with status 1 and run's
// error if it fails.
func Main(prog string, checkErr error, run func(context.Context) error) {
	if flag.NArg() > 0 {
		checkErr = fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	if checkErr != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, checkErr)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", prog, err)
		os.Exit(1)
	}
}

// PluginDir makes dir, if need be, a plugind plugin directory: dir/src
// holding files (base name to content) and the empty dir/prest.toml that
// Env names.
func PluginDir(dir string, files map[string][]byte) error {
	err := errors.Join(os.MkdirAll(filepath.Join(dir, "src"), 0o755),
		os.WriteFile(filepath.Join(dir, "prest.toml"), nil, 0o644))
	if err != nil {
		return fmt.Errorf("plugin dir: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, "src", name), data, 0o644); err != nil {
			return fmt.Errorf("plugin dir: %w", err)
		}
	}
	return nil
}

// WriteConfig writes toml as the config file of the plugin directory dir,
// for what PREST_* variables cannot say ([plugin.NAME] tables).
func WriteConfig(dir, toml string) error {
	if err := os.WriteFile(filepath.Join(dir, "prest.toml"), []byte(toml), 0o644); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return nil
}

// Env is this process's environment for plugind on the plugin directory
// dir, then extra. The empty explicit config file PluginDir writes keeps a
// stray ./prest.toml out, and the caller's PREST_* and PORT variables are
// left out.
func Env(dir string, extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PREST_") || strings.HasPrefix(kv, "PORT=")
	})
	env = append(env, "PREST_CONF="+filepath.Join(dir, "prest.toml"), "PREST_PLUGINPATH="+dir)
	return append(env, extra...)
}

// FreePorts returns n distinct free ports on 127.0.0.1, holding each open
// until all are found.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Server is a running plugind child process; its Poll waits for an
// answer while it runs.
type Server struct {
	*childproc.Process
	Addr string // 127.0.0.1:PORT
}

// Start starts bin as a server of the plugin directory dir on
// 127.0.0.1:port, with Env(dir) and extra, and its output in logPath.
func Start(bin, dir string, port int, logPath string, extra ...string) (*Server, error) {
	cmd := exec.Command(bin)
	cmd.Env = Env(dir, append([]string{"PREST_HTTP_HOST=127.0.0.1", "PREST_HTTP_PORT=" + strconv.Itoa(port)}, extra...)...)
	p, err := childproc.Start("server", cmd, logPath)
	if err != nil {
		return nil, err
	}
	return &Server{Process: p, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, nil
}

// URL is the server's URL for path.
func (s *Server) URL(path string) string { return "http://" + s.Addr + path }

// Stop sends SIGTERM and waits for the exit, killing after StopTimeout.
// A server that has already exited is an error: something else stopped it.
func (s *Server) Stop() error {
	if err := s.Process.Stop(syscall.SIGTERM, StopTimeout); errors.Is(err, childproc.ErrExited) {
		return fmt.Errorf("the server exited before the end of the run (%s)", s.Cmd.ProcessState)
	} else if err != nil {
		return err
	}
	if err := s.Err(); err != nil {
		return fmt.Errorf("server exit: %w", err)
	}
	return nil
}

// Get GETs url with client, sending header ("Name: value", "" for none),
// and returns the answer and its body, read and closed. A body longer
// than MaxBody is an error.
func Get(ctx context.Context, client *http.Client, url, header string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	if name, value, ok := strings.Cut(header, ":"); ok {
		req.Header.Set(name, strings.TrimSpace(value))
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	switch {
	case err != nil:
		return nil, nil, err
	case len(body) > MaxBody:
		return nil, nil, fmt.Errorf("body longer than %d bytes", MaxBody)
	}
	return resp, body, nil
}

// PrintTail prints the last n lines of the log at path, called what in
// the messages, to stderr, prefixed with prog. It reads only the end of
// the log: the access log has a line per request. A log that does not
// exist is not printed: its process was never started.
func PrintTail(prog, what, path string, n int) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	} else if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s: %v\n", prog, what, err)
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 64<<10 {
		_, _ = f.Seek(-64<<10, io.SeekEnd)
	}
	data, _ := io.ReadAll(f)
	if len(bytes.TrimSpace(data)) == 0 {
		fmt.Fprintf(os.Stderr, "%s: %s is empty\n", prog, what)
		return
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	fmt.Fprintf(os.Stderr, "%s: last %d lines of %s:\n%s\n", prog, len(lines), what, strings.Join(lines, "\n"))
}
