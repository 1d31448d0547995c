// Package pgtest starts a throwaway PostgreSQL server for tests: the
// distribution's own binaries, a fresh data directory and a free loopback
// port, stopped and removed when the test ends. Tests that need PostgreSQL
// fail (never skip) when its binaries are missing, saying what to install.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"fmt"
	"net"
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
)

// Install says how to get PostgreSQL's server binaries on Debian.
const Install = "apt-get update && apt-get install -y postgresql"

// Server is a PostgreSQL server of one test.
type Server struct {
	port      int
	bin, data string
	run, log  string
	cred      *syscall.Credential
	proc      *os.Process
	exited    chan error // nil while stopped
}

// Start starts a PostgreSQL server for tb and stops it at tb's cleanup.
// Run as root, the server runs as the postgres user (PostgreSQL refuses
// root).
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin, err := binDir(debianBins)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	cred, err := credential()
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	base, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil { // the postgres user goes through it
		tb.Fatal(err)
	}
	s := &Server{bin: bin, cred: cred, data: filepath.Join(base, "data"), run: filepath.Join(base, "run"), log: filepath.Join(base, "postgres.log")}
	for _, d := range []string{s.data, s.run} {
		if err := os.Mkdir(d, 0o700); err != nil {
			tb.Fatal(err)
		}
		if cred != nil {
			if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				tb.Fatal(err)
			}
		}
	}
	initdb := command(cred, filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	if s.port, err = freePort(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Stop(tb) })
	s.Restart(tb)
	return s
}

// Restart starts the server again after Stop, on the same port and data.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if s.exited != nil {
		tb.Fatal("pgtest: the server is running")
	}
	logFile, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer logFile.Close()
	srv := command(s.cred, filepath.Join(s.bin, "postgres"), "-D", s.data, "-p", strconv.Itoa(s.port), "-k", s.run,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	srv.Stdout, srv.Stderr = logFile, logFile
	if err := srv.Start(); err != nil {
		tb.Fatalf("pgtest: starting postgres: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	s.proc, s.exited = srv.Process, exited

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
			return
		}
		select {
		case err := <-exited:
			s.exited = nil
			log, _ := os.ReadFile(s.log)
			tb.Fatalf("pgtest: postgres exited: %v\n%s", err, log)
		case <-ctx.Done():
			s.proc.Kill()
			<-exited
			s.exited = nil
			log, _ := os.ReadFile(s.log)
			tb.Fatalf("pgtest: postgres did not accept connections: %v\n%s", err, log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the server (clients are disconnected); Restart starts it
// again.
func (s *Server) Stop(tb testing.TB) {
	tb.Helper()
	if s.exited == nil {
		return
	}
	s.proc.Signal(syscall.SIGINT) // fast shutdown: disconnect clients, stop
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		tb.Errorf("pgtest: postgres did not stop within 30s; killing it")
		s.proc.Kill()
		<-s.exited
	}
	s.exited = nil
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
