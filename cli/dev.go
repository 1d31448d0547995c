package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/console"
	"github.com/plugind/plugind/loader"
)

func devCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "dev",
		Short: "Run the server for a plugin author: hot reload, debug, console logs, a banner of URLs",
		Long: "Run the server as a plugin author wants it: debug on (compiler output in error\n" +
			"bodies), hot reload on (plugins.reload = \"on-change\"), the admin page on, logs\n" +
			"for people (unless log.format = \"json\"), a banner with each plugin's routes as\n" +
			"curl lines, and one line per rebuild. Not for production: use serve.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServer(cmd, environ, stdout, stderr, true)
		},
	}
}

// devLog turns loader events into one short line each, for plugind dev:
// "report rebuilt in 812ms", "report: build failed: report.go:12:3:
// undefined: x".
type devLog struct {
	log zerolog.Logger

	mu    sync.Mutex               // guards built
	built map[string]time.Duration // a build's duration, until its plugin loads
}

func newDevLog(log zerolog.Logger) *devLog {
	return &devLog{log: log, built: make(map[string]time.Duration)}
}

// event logs ev. It runs on the loader's goroutines; it only logs.
func (d *devLog) event(ev loader.Event) {
	d.mu.Lock()
	took, built := d.built[ev.Plugin]
	switch ev.Kind {
	case loader.EventBuilt:
		d.built[ev.Plugin] = ev.Duration
	case loader.EventLoaded, loader.EventReloaded, loader.EventBuildFailed, loader.EventLoadFailed, loader.EventRemoved:
		delete(d.built, ev.Plugin)
	}
	d.mu.Unlock()

	msg := devLine(ev, took, built)
	if msg == "" {
		return
	}
	e := d.log.Info()
	if ev.Err != nil {
		e = d.log.Error()
	}
	e.Str("plugin", ev.Plugin).Str("event", string(ev.Kind)).Msg(msg)
}

// devLine is the line for ev; took is the plugin's last build, if built.
// "" for events that get none (a build is told when its plugin loads).
func devLine(ev loader.Event, took time.Duration, built bool) string {
	switch ev.Kind {
	case loader.EventLoaded:
		if built {
			return fmt.Sprintf("%s built in %s", ev.Plugin, console.Duration(took))
		}
		return ev.Plugin + " loaded from the cache"
	case loader.EventReloaded:
		if built {
			return fmt.Sprintf("%s rebuilt in %s", ev.Plugin, console.Duration(took))
		}
		return ev.Plugin + " reloaded from the cache"
	case loader.EventBuildFailed:
		return ev.Plugin + ": build failed: " + firstDiagnostic(ev.Err)
	case loader.EventLoadFailed:
		return ev.Plugin + ": load failed: " + errorMessage(ev.Err)
	case loader.EventRemoved:
		return ev.Plugin + " removed"
	}
	return ""
}

// firstDiagnostic is the compiler's first message in err ("report.go:12:3:
// undefined: x"), with a count of the others, or the error's message.
func firstDiagnostic(err error) string {
	var e *loader.Error
	if !errors.As(err, &e) || strings.TrimSpace(e.Output) == "" {
		return errorMessage(err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(e.Output), "\n") {
		// Diagnostics start at column 0; indented lines continue one.
		if l != "" && l[0] != ' ' && l[0] != '\t' {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return errorMessage(err)
	}
	first := strings.TrimPrefix(lines[0], "./")
	if n := len(lines) - 1; n == 1 {
		first += " (and 1 more)"
	} else if n > 1 {
		first += fmt.Sprintf(" (and %d more)", n)
	}
	return first
}

// errorMessage is the client-safe message of a loader error.
func errorMessage(err error) string {
	var e *loader.Error
	if errors.As(err, &e) {
		if d := strings.TrimSpace(e.Detail); d != "" {
			// What the plugin said (an Init's error, a panic's value):
			// the console is its author's. Its first line keeps the
			// message one line.
			first, rest, more := strings.Cut(d, "\n")
			if more {
				n, unit := strings.Count(strings.TrimSpace(rest), "\n")+1, "line"
				if n > 1 {
					unit = "lines"
				}
				first += fmt.Sprintf(" (and %d more %s)", n, unit)
			}
			return e.Msg + ": " + first
		}
		return e.Msg
	}
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// printBanner tells a plugin author where things are: the admin page and
// each plugin's routes as curl lines.
func printBanner(w io.Writer, cfg config.Config, addr net.Addr, plugins []loader.Info) {
	base := baseURL(cfg, addr)
	var b strings.Builder
	fmt.Fprintf(&b, "\nplugind dev: serving %s on %s (debug and hot reload on)\n", cfg.SrcDir(), base)
	if cfg.Admin.Enabled {
		fmt.Fprintf(&b, "  admin    %s/_ADMIN/\n", base)
	}
	if cfg.Admin.PProf {
		fmt.Fprintf(&b, "  profile  go tool pprof '%s/_ADMIN/pprof/profile?seconds=10'\n", base)
	}
	fmt.Fprintf(&b, "  plugins  %s/_PLUGINS\n", base)
	if len(cfg.Auth.APIKeys) > 0 {
		fmt.Fprintf(&b, "  auth.apikeys are set: add -H 'X-API-Key: <key>' to these\n")
	}
	if len(plugins) == 0 {
		fmt.Fprintf(&b, "  no plugins in %s yet: plugind new NAME writes one\n", cfg.SrcDir())
	}
	for _, p := range plugins {
		fmt.Fprintf(&b, "\n  %s (%s)\n", p.Name, p.Kind)
		if len(p.Handlers) == 0 {
			fmt.Fprintf(&b, "    no handlers found (exported <METHOD><Func>Handler functions)\n")
		}
		for _, h := range p.Handlers {
			fmt.Fprintf(&b, "    %s\n", curlLine(base, p.Name, h))
		}
	}
	fmt.Fprintf(&b, "\nThe first request to a plugin builds it; saving its source rebuilds it.\n\n")
	io.WriteString(w, b.String())
}

// curlLine is a command that calls handler h of plugin name.
func curlLine(base, name string, h loader.HandlerInfo) string {
	u := fmt.Sprintf("'%s/_PLUGIN/%s/%s'", base, url.PathEscape(name), url.PathEscape(h.Func))
	var line string
	switch h.Method {
	case "GET":
		line = "curl " + u
	case "HEAD":
		line = "curl -I " + u
	case "POST", "PUT", "PATCH":
		line = fmt.Sprintf("curl -X %s -d '{}' %s", h.Method, u)
	default:
		line = fmt.Sprintf("curl -X %s %s", h.Method, u)
	}
	if h.ABI == loader.ABIUnsupported {
		line += fmt.Sprintf("   # %s: unsupported signature %s", h.Symbol, h.Signature)
	}
	return line
}

// baseURL is the address a browser on this machine reaches the server at.
func baseURL(cfg config.Config, addr net.Addr) string {
	host := cfg.HTTP.Host
	port := fmt.Sprint(cfg.HTTP.Port)
	if h, p, err := net.SplitHostPort(addr.String()); err == nil {
		port = p
		if host == "" {
			host = h
		}
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	scheme := "http"
	if cfg.HTTPS.Mode {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
