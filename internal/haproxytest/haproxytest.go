// Package haproxytest runs HAProxy in front of test servers: Debian's
// haproxy binary as a child process on free loopback ports, round-robin
// over the servers with HTTP health checks, stopped when the test ends.
// Tests that need it fail (never skip) when the binary is missing, saying
// what to install.
package haproxytest

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/plugind/plugind/internal/benchproc"
	"github.com/plugind/plugind/internal/childproc"
)

// Install says how to get HAProxy on Debian.
const Install = "apt-get update && apt-get install -y haproxy"

// ServedBy is the response header naming the server that answered.
const ServedBy = "X-Served-By"

// Server is one backend server.
type Server struct {
	Name string // letters, digits, '-', '_'
	Addr string // host:port
}

// Config is what the proxy balances and how it checks.
type Config struct {
	Servers []Server
	// Check is the path a server answers 200 on when it takes requests
	// (GET); any other answer, or none, marks it down at once (fall 1)
	// and one 200 marks it up again (rise 1).
	Check string
	// Interval is the time between two checks of a server.
	Interval time.Duration
	// Retries is how often a request whose connection failed, or whose
	// connection closed before any answer, is tried again, each time on
	// another server (option redispatch). Retried requests must be
	// idempotent: HAProxy resends them whole.
	Retries int
}

// Proxy is a running HAProxy.
type Proxy struct {
	Addr      string // the frontend, 127.0.0.1:PORT
	statsAddr string
	dir       string
	proc      *childproc.Process
}

// Check reports an error naming the package to install when there is no
// haproxy binary to run, so that a test can fail before it sets up
// anything else.
func Check() error {
	_, err := binary(debianBinary)
	return err
}

// debianBinary is where Debian's haproxy package puts the binary, in a
// directory a user's PATH may lack.
const debianBinary = "/usr/sbin/haproxy"

// Start starts HAProxy for tb with cfg and stops it at tb's cleanup.
func Start(tb testing.TB, cfg Config) *Proxy {
	tb.Helper()
	p, err := start(tb.TempDir(), cfg)
	if err != nil {
		tb.Fatalf("haproxytest: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.stop(); err != nil {
			tb.Errorf("haproxytest: %v", err)
		}
	})
	return p
}

var configTemplate = template.Must(template.New("haproxy.cfg").Parse(`global
	maxconn 4096
	nbthread 2

defaults
	mode http
	timeout connect 1s
	timeout client 30s
	timeout server 30s
	timeout check 1s
	timeout http-keep-alive 10s
	retries {{.Retries}}
	option redispatch 1
	retry-on conn-failure empty-response junk-response

frontend fe
	bind {{.Addr}}
	default_backend be

backend be
	balance roundrobin
	option httpchk
	http-check send meth GET uri {{.Check}}
	http-check expect status 200
	default-server check inter {{.Interval}} fastinter {{.Interval}} downinter {{.Interval}} fall 1 rise 1
	http-response set-header {{.ServedBy}} %s
{{- range .Servers}}
	server {{.Name}} {{.Addr}}
{{- end}}

frontend stats
	bind {{.StatsAddr}}
	stats enable
	stats uri /stats
`))

func start(dir string, cfg Config) (*Proxy, error) {
	bin, err := binary(debianBinary)
	if err != nil {
		return nil, err
	}
	switch {
	case len(cfg.Servers) == 0:
		return nil, errors.New("no servers")
	case !strings.HasPrefix(cfg.Check, "/") || strings.ContainsAny(cfg.Check, " \t\n"):
		return nil, fmt.Errorf("check path %q: want an absolute path without spaces", cfg.Check)
	case cfg.Interval < time.Millisecond:
		return nil, fmt.Errorf("check interval %s: want at least 1ms", cfg.Interval)
	}
	for _, s := range cfg.Servers {
		if s.Name == "" || strings.Trim(s.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return nil, fmt.Errorf("server name %q: want letters, digits, '-' and '_'", s.Name)
		}
		if _, _, err := net.SplitHostPort(s.Addr); err != nil {
			return nil, fmt.Errorf("server %s: %w", s.Name, err)
		}
	}
	ports, err := benchproc.FreePorts(2)
	if err != nil {
		return nil, err
	}
	p := &Proxy{
		Addr:      net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])),
		statsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])),
		dir:       dir,
	}
	var b strings.Builder
	err = configTemplate.Execute(&b, map[string]any{
		"Addr": p.Addr, "StatsAddr": p.statsAddr, "Servers": cfg.Servers, "Check": cfg.Check,
		"Interval": strconv.FormatInt(cfg.Interval.Milliseconds(), 10) + "ms", "Retries": cfg.Retries, "ServedBy": ServedBy,
	})
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command(bin, "-c", "-q", "-f", conf).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxy -c: %w\n%s\n%s", err, out, b.String())
	}
	// -db: in the foreground, a single process that SIGTERM stops.
	p.proc, err = childproc.Start("haproxy", exec.Command(bin, "-db", "-f", conf), filepath.Join(dir, "haproxy.log"))
	if err != nil {
		return nil, err
	}
	err = p.proc.Poll(context.Background(), 30*time.Second, 20*time.Millisecond, func(ctx context.Context) (bool, error) {
		_, err := p.States(ctx)
		return err == nil, err
	})
	if err != nil {
		p.proc.Kill()
		return nil, fmt.Errorf("haproxy's stats page: %w\n%s", err, p.Log())
	}
	return p, nil
}

// URL is the frontend's URL for path.
func (p *Proxy) URL(path string) string { return "http://" + p.Addr + path }

// Log is what HAProxy wrote (alerts and warnings).
func (p *Proxy) Log() string {
	data, _ := os.ReadFile(filepath.Join(p.dir, "haproxy.log"))
	return string(data)
}

// States maps each server's name to its state as HAProxy's statistics
// report it: "UP", "DOWN", "MAINT"...
func (p *Proxy) States(ctx context.Context) (map[string]string, error) {
	rows, err := p.stats(ctx)
	if err != nil {
		return nil, err
	}
	states := map[string]string{}
	for _, row := range rows {
		if row["pxname"] == "be" && row["svname"] != "BACKEND" && row["svname"] != "FRONTEND" {
			states[row["svname"]] = row["status"]
		}
	}
	return states, nil
}

// Retries reports how many times HAProxy has retried a request to the
// servers and how many of those retries went to another server.
func (p *Proxy) Retries(ctx context.Context) (retries, redispatches int64, err error) {
	rows, err := p.stats(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, row := range rows {
		if row["pxname"] == "be" && row["svname"] == "BACKEND" {
			retries, err1 := strconv.ParseInt(row["wretr"], 10, 64)
			redispatches, err2 := strconv.ParseInt(row["wredis"], 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				return 0, 0, fmt.Errorf("stats: %w", err)
			}
			return retries, redispatches, nil
		}
	}
	return 0, 0, errors.New("stats: no backend row")
}

// stats reads HAProxy's statistics (CSV), a row per proxy and server,
// each a map from column name to value.
func (p *Proxy) stats(ctx context.Context) ([]map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.statsAddr+"/stats;csv;norefresh", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("stats: %s", resp.Status)
	}
	r := csv.NewReader(resp.Body)
	r.FieldsPerRecord = -1
	records, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	if len(records) == 0 {
		return nil, errors.New("stats: empty")
	}
	head := records[0]
	if len(head) > 0 {
		head[0] = strings.TrimPrefix(head[0], "# ")
	}
	rows := make([]map[string]string, 0, len(records)-1)
	for _, rec := range records[1:] {
		row := map[string]string{}
		for i, v := range rec {
			if i < len(head) {
				row[head[i]] = v
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// Await waits, for at most limit, until HAProxy reports server name in
// state ("UP", "DOWN").
func (p *Proxy) Await(ctx context.Context, name, state string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	last := "no answer"
	for {
		states, err := p.States(ctx)
		if err != nil {
			last = err.Error()
		} else if s, ok := states[name]; !ok {
			return fmt.Errorf("haproxy has no server %s: %v", name, states)
		} else if s == state {
			return nil
		} else {
			last = s
		}
		select {
		case <-p.proc.Exited():
			return fmt.Errorf("haproxy exited (%v)", p.proc.Err())
		case <-ctx.Done():
			return fmt.Errorf("haproxy did not report %s %s within %s: last %s", name, state, limit, last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (p *Proxy) stop() error {
	err := p.proc.Stop(syscall.SIGTERM, 10*time.Second)
	if errors.Is(err, childproc.ErrExited) {
		return fmt.Errorf("haproxy exited before the end of the test (%v):\n%s", p.proc.Err(), p.Log())
	}
	return err
}

// binary finds haproxy on PATH or else at one of the paths in elsewhere:
// Debian puts it in /usr/sbin, which a user's PATH may lack.
func binary(elsewhere ...string) (string, error) {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p, nil
	}
	for _, p := range elsewhere {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("no haproxy on PATH or in /usr/sbin: install Debian's package: %s", Install)
}
