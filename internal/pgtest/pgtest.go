//go:build unix

// Package pgtest starts a throwaway PostgreSQL server for tests: the
// distribution's own binaries, a fresh data directory and a free loopback
// port, stopped and removed when the test ends. Tests that need PostgreSQL
// fail (never skip) when its binaries are missing, saying what to install.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plugind/plugind/internal/benchproc"
	"github.com/plugind/plugind/internal/childproc"
)

// Install says how to get PostgreSQL's server binaries on Debian.
const Install = "apt-get update && apt-get install -y postgresql"

// Server is a throwaway PostgreSQL server.
type Server struct {
	port            int
	bin, base, data string
	run, log        string
	cred            *syscall.Credential
	proc            *childproc.Process // nil while stopped
}

// Start starts a PostgreSQL server for tb and removes it at tb's cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := New()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// New starts a PostgreSQL server; Close stops and removes it. For a
// server shared by a package's tests (started in TestMain, or on first
// use); Start suits one test. Run as root, the server runs as the postgres
// user: PostgreSQL refuses root.
func New() (*Server, error) {
	bin, err := binDir(debianBins)
	if err != nil {
		return nil, err
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, cred: cred, base: base, data: filepath.Join(base, "data"), run: filepath.Join(base, "run"), log: filepath.Join(base, "postgres.log")}
	if err := s.init(); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	if err := s.start(); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	return s, nil
}

func (s *Server) init() error {
	if err := os.Chmod(s.base, 0o755); err != nil { // the postgres user goes through it
		return err
	}
	for _, d := range []string{s.data, s.run} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return err
		}
		if s.cred != nil {
			if err := os.Chown(d, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return err
			}
		}
	}
	initdb := command(s.cred, filepath.Join(s.bin, "initdb"), "-D", s.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	ports, err := benchproc.FreePorts(1)
	if err == nil {
		s.port = ports[0]
	}
	return err
}

// Close stops the server and removes its data.
func (s *Server) Close() error {
	err := s.stop()
	if rerr := os.RemoveAll(s.base); err == nil {
		err = rerr
	}
	return err
}

// Stop stops the server (clients are disconnected); Restart starts it
// again.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if err := s.stop(); err != nil {
		tb.Errorf("pgtest: %v", err)
	}
}

// Restart starts the server again after Stop, on the same port and data.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.start(); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
}

func (s *Server) start() error {
	if s.proc != nil {
		return errors.New("the server is running")
	}
	srv := command(s.cred, filepath.Join(s.bin, "postgres"), "-D", s.data, "-p", strconv.Itoa(s.port), "-k", s.run,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	proc, err := childproc.Start("postgres", srv, s.log)
	if err != nil {
		return err
	}
	err = proc.Poll(context.Background(), 60*time.Second, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
		}
		return err == nil, err
	})
	if err != nil {
		proc.Kill()
		log, _ := os.ReadFile(s.log)
		return fmt.Errorf("postgres did not accept connections: %w\n%s", err, log)
	}
	s.proc = proc
	return nil
}

func (s *Server) stop() error {
	if s.proc == nil {
		return nil
	}
	defer func() { s.proc = nil }()
	// SIGINT is the fast shutdown: disconnect clients, stop. One that had
	// exited already is stopped as well.
	if err := s.proc.Stop(syscall.SIGINT, 30*time.Second); err != nil && !errors.Is(err, childproc.ErrExited) {
		return err
	}
	return nil
}

// DSN is the address of database db, as the superuser.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// NewDatabase creates an empty database and returns its DSN.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	var raw [6]byte
	rand.Read(raw[:])
	name := "test_" + hex.EncodeToString(raw[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	return s.DSN(name)
}

// debianBins is where Debian's postgresql packages put the server.
const debianBins = "/usr/lib/postgresql/*/bin"

// binDir finds the newest of the directories matching pattern that holds
// postgres and initdb, or else the directory of postgres on PATH.
func binDir(pattern string) (string, error) {
	dirs, _ := filepath.Glob(pattern)
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "postgres")) && isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil && isExec(filepath.Join(filepath.Dir(p), "initdb")) {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (postgres, initdb) in %s or on PATH: install them with: %s", pattern, Install)
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// credential is the postgres user's when running as root, else nil (run
// as the current user).
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL needs another user and there is no 'postgres' user (%w): install PostgreSQL: %s", err, Install)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func command(cred *syscall.Credential, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	return cmd
}
