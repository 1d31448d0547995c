package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/plugind/plugind/build"
	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/server"
)

// withLoader loads the configuration and a loader for a command that
// works on plugins without serving them. Its log goes to stderr, warnings
// and worse only.
func withLoader(cmd *cobra.Command, environ []string, stderr io.Writer, run func(cfg config.Config, l *loader.Loader) error) error {
	cfg, err := config.Load(cmd.Flags(), environ)
	if err != nil {
		return err
	}
	log, out := newLogger(stderr, cfg.Log.Format, zerolog.WarnLevel)
	defer out.Close()
	l, _, err := server.NewLoader(cfg, log, nil)
	if err != nil {
		return err
	}
	defer l.Close(cmd.Context())
	return run(cfg, l)
}

// withPipeline is withLoader for a command that only builds and checks
// artifacts: it gets the build pipeline alone.
func withPipeline(cmd *cobra.Command, environ []string, stderr io.Writer, run func(cfg config.Config, p *build.Pipeline, host build.HostBuild) error) error {
	cfg, err := config.Load(cmd.Flags(), environ)
	if err != nil {
		return err
	}
	log, out := newLogger(stderr, cfg.Log.Format, zerolog.WarnLevel)
	defer out.Close()
	p, host, err := server.NewPipeline(cmd.Context(), cfg, log)
	if err != nil {
		return err
	}
	return run(cfg, p, host)
}

func buildCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "build [NAME...]",
		Short: "Build plugins ahead of time into the artifact cache (all when no NAME)",
		Long: "Build plugins into the artifact cache, checked against this server's build and\n" +
			"opened once in a child process, so that a server started later serves them at\n" +
			"once. Prints one line per plugin and the compiler's diagnostics; exits non-zero\n" +
			"if any plugin fails. For images and CI. Without NAME it builds every plugin and\n" +
			"every middleware in src/middlewares, named middlewares/NAME. A plugin whose\n" +
			"isolation is \"process\" is built as the executable the server runs it as, on a\n" +
			"line NAME (process); one whose isolation is \"auto\" is built both ways.",
		RunE: func(cmd *cobra.Command, names []string) error {
			return withPipeline(cmd, environ, stderr, func(cfg config.Config, p *build.Pipeline, _ build.HostBuild) error {
				if len(names) == 0 {
					found, _, err := p.Discover()
					if err != nil {
						return err
					}
					middleware, _, err := p.DiscoverMiddleware()
					if err != nil {
						return err
					}
					for _, s := range append(found, middleware...) {
						names = append(names, s.Name)
					}
				}
				// The manager a server with this configuration runs
				// isolated plugins with: the programs it builds are
				// those the server looks for.
				iso, err := server.NewIsolated(cfg, p, zerolog.Nop())
				if err != nil {
					return err
				}
				if iso != nil {
					defer iso.Close(context.WithoutCancel(cmd.Context())) // nothing was started: returns at once
				}
				failed := 0
				report := func(label, key string, dur time.Duration, start time.Time, err error) (ok bool) {
					switch {
					case err != nil:
						fmt.Fprintf(stdout, "%-20s FAILED  %s\n", label, time.Since(start).Round(time.Millisecond))
						fmt.Fprintf(stdout, "  %s\n", describe(err))
					case dur == 0:
						fmt.Fprintf(stdout, "%-20s cached  %s\n", label, key[:16])
					default:
						fmt.Fprintf(stdout, "%-20s built   %s  %s\n", label, key[:16], dur.Round(time.Millisecond))
					}
					return err == nil
				}
				for _, name := range names {
					inProcess, isolated := buildsOf(cfg, name)
					if isolated && inProcess && build.ValidName(name) {
						if src, err := p.Find(name); err == nil && src.Kind == build.KindPrebuilt {
							isolated = false // "auto": a .so without source can only run in-process
						}
					}
					ok := true
					if inProcess {
						start := time.Now()
						res, err := p.Build(cmd.Context(), name)
						if err == nil {
							var dur time.Duration
							dur, err = buildCopies(cmd.Context(), p, name, res.Key, cfg.Plugin(name).Copies)
							res.Duration += dur
						}
						if isolated && errors.Is(err, loader.ErrDependency) {
							// "auto": a server runs it in a process, from
							// the executable built next; no .so is kept.
							fmt.Fprintf(stdout, "%-20s process %s\n", name, "cannot load in-process, runs in a process (isolation = \"auto\")")
							fmt.Fprintf(stdout, "  %s\n", describe(err))
						} else {
							ok = report(name, res.Key, res.Duration, start, err)
						}
					}
					if isolated && iso != nil {
						start := time.Now()
						res, err := iso.Build(cmd.Context(), name)
						ok = report(name+" (process)", res.Key, res.Duration, start, err) && ok
					}
					if !ok {
						failed++
					}
				}
				if failed > 0 {
					return fmt.Errorf("%d of %d plugins failed", failed, len(names))
				}
				return nil
			})
		},
	}
}

// buildsOf says which builds of plugin name a server with cfg may use:
// the .so it loads in-process, the program it runs in a process of the
// plugin's own (isolation "process"), or both ("auto": in-process, and
// in a process when the plugin cannot load in-process; building both
// costs a second build, paid once where plugind build runs, and lets a
// prebuilt-mode server move the plugin as a server that builds would).
// Middleware always runs in-process.
func buildsOf(cfg config.Config, name string) (inProcess, isolated bool) {
	if _, ok := build.MiddlewareFile(name); ok {
		return true, false
	}
	switch cfg.Isolation(name) {
	case config.IsolationProcess:
		return false, true
	case config.IsolationAuto:
		return loader.Supported, true // where .so plugins cannot load, auto runs every plugin in a process
	}
	return true, false
}

// buildCopies builds copies 1 to n-1 of plugin name, whose artifact's
// key is k, as a server loads them for [plugin.NAME] copies = n (see
// loader.CopiesOf), so that prebuilt mode finds them. It returns the
// time spent building.
func buildCopies(ctx context.Context, p *build.Pipeline, name, k string, configured int) (time.Duration, error) {
	src, err := p.Find(name)
	if err != nil {
		return 0, err
	}
	n, _ := loader.CopiesOf(src, configured)
	var built time.Duration
	for i := 1; i < n; i++ {
		c := src
		c.Copy = i
		_, dur, err := p.Artifact(ctx, c, build.CopyKey(k, i), nil)
		built += dur
		if err != nil {
			return built, fmt.Errorf("copy %d: %w", i, err)
		}
	}
	return built, nil
}

// describe is an error with the compiler's diagnostics, indented.
func describe(err error) string {
	var e *loader.Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	s := e.Msg
	if e.Output != "" {
		s += "\n    " + strings.ReplaceAll(e.Output, "\n", "\n    ")
	}
	return s
}

func listCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List plugins, their handlers (method, function, ABI) and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withLoader(cmd, environ, stderr, func(cfg config.Config, l *loader.Loader) error {
				infos := l.List()
				for i := range infos {
					// A one-shot process has loaded nothing: report the cache.
					if k, cached, err := l.Pipeline().Cached(infos[i].Name); err == nil && cached {
						infos[i].Hash, infos[i].State = k[:16], loader.StateBuilt
					}
				}
				if asJSON {
					enc := json.NewEncoder(stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(infos)
				}
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PLUGIN\tKIND\tSTATE\tVERSION\tMETHOD\tFUNC\tABI")
				for _, i := range infos {
					if len(i.Handlers) == 0 {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t-\t-\t-\n", i.Name, i.Kind, i.State, dash(i.Hash))
					}
					for _, h := range i.Handlers {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i.Name, i.Kind, i.State, dash(i.Hash), h.Method, h.Func, h.ABI)
					}
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func doctorCommand(environ []string, stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check that plugins can be built and loaded here",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withLoader(cmd, environ, stderr, func(cfg config.Config, l *loader.Loader) error {
				p, host := l.Pipeline(), l.Pipeline().Host()
				problems := l.ToolchainProblems()
				fmt.Fprintf(stdout, "server      %s %s, built with %s %s\n", host.Module, host.ModuleVersion, host.GoVersion, strings.Join(host.Flags, " "))
				fmt.Fprintf(stdout, "platform    %s, plugins supported: %v\n", strings.Join(host.Env, " "), loader.Supported)
				if p.Prebuilt() {
					fmt.Fprintln(stdout, "mode        prebuilt (plugins.build = off): serves what plugind build made; never runs go or a C compiler")
					problems = append(problems, notBuilt(cfg, p)...)
				} else {
					fmt.Fprintln(stdout, "mode        auto (plugins.build = auto): builds plugins on demand")
					goCmd, cc := toolchainOf(cmd.Context(), cfg.Plugins.Go, p.GoEnv())
					fmt.Fprintf(stdout, "go          %s\n", goCmd)
					fmt.Fprintf(stdout, "cc          %s\n", cc)
					fmt.Fprintf(stdout, "module      plugins are built in %s\n", p.ModuleDir())
				}
				fmt.Fprintf(stdout, "sources     %s\n", cfg.SrcDir())
				fmt.Fprintf(stdout, "cache       %s\n", cfg.Plugins.CacheDir)
				reports, err := p.CheckCache()
				if err != nil {
					problems = append(problems, fmt.Sprintf("cannot read the artifact cache: %v", err))
				}
				good := 0
				for _, r := range reports {
					if r.Err != nil {
						problems = append(problems, fmt.Sprintf("cached artifact %s: %v", filepath.Base(r.Path), r.Err))
					} else {
						good++
					}
				}
				fmt.Fprintf(stdout, "artifacts   %d cached, %d compatible with this server\n", len(reports), good)
				if len(problems) == 0 {
					fmt.Fprintln(stdout, "ok          plugins can be built and loaded here")
					return nil
				}
				for _, problem := range problems {
					fmt.Fprintf(stdout, "PROBLEM     %s\n", problem)
				}
				if len(problems) == 1 {
					return errors.New("1 problem")
				}
				return fmt.Errorf("%d problems", len(problems))
			})
		},
	}
}

// toolchainOf describes the go command plugins are built with and the C
// compiler cgo uses with it (go env CC): the path of each and the
// version it reports, asked with goEnv, the environment the server runs
// the go command with (build.Pipeline.GoEnv). The process's environment
// is not that one (a blank CC, which go env echoes, builds take as unset),
// so asking with it could name a compiler builds never use. The loader
// names what is missing as problems.
func toolchainOf(ctx context.Context, goCmd string, goEnv []string) (goDesc, ccDesc string) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// As the pipeline reads go env: never a toolchain download, no go.work.
	env := append(goEnv, "GOTOOLCHAIN=local", "GOWORK=off")
	goPath, err := exec.LookPath(goCmd)
	if err != nil {
		return fmt.Sprintf("%q not found on PATH", goCmd), "unknown (no go command to ask for CC)"
	}
	// One go env for both, as the pipeline's: a line per variable.
	out, err := output(ctx, env, goPath, "env", "GOVERSION", "CC")
	if err != nil {
		return fmt.Sprintf("%s, go env failed: %v", goPath, err), "unknown (go env CC failed)"
	}
	version, ccLine, _ := strings.Cut(out, "\n")
	goDesc = goPath + ", " + version
	cc := strings.Fields(ccLine)
	if len(cc) == 0 {
		return goDesc, "unknown (go env CC is empty)"
	}
	ccPath, err := exec.LookPath(cc[0])
	if err != nil {
		return goDesc, fmt.Sprintf("%q (go env CC) not found on PATH", cc[0])
	}
	line, _ := output(ctx, env, ccPath, "--version")
	line, _, _ = strings.Cut(line, "\n")
	return goDesc, ccPath + ", " + line
}

// output runs a command and returns its output, trimmed, or when it
// failed without any, why; err is the command's.
func output(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.Output()
	s := strings.TrimSpace(string(out))
	if err != nil && s == "" {
		s = fmt.Sprintf("%s %s failed: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	return s, err
}

func newCommand(environ []string, stdout io.Writer) *cobra.Command {
	var abi string
	cmd := &cobra.Command{
		Use:   "new NAME",
		Short: "Scaffold a plugin in <pluginpath>/src",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := config.Load(cmd.Flags(), environ)
			if err != nil {
				return err
			}
			name := args[0]
			if !loader.ValidName(name) {
				return fmt.Errorf("invalid plugin name %q: use 1 to %d letters, digits, '_' or '-'", name, loader.MaxNameLen)
			}
			if build.Ignored(name) {
				return fmt.Errorf("plugin name %q begins with '_': plugind ignores such files, as the go command does, so it would never be served", name)
			}
			src, ok := scaffolds[abi]
			if !ok || scaffoldTests[abi] == "" {
				return fmt.Errorf("--abi must be legacy or standard, not %q", abi)
			}
			path := filepath.Join(cfg.SrcDir(), name+".go")
			if _, err := os.Stat(filepath.Join(cfg.SrcDir(), name)); err == nil {
				return fmt.Errorf("plugin %s exists already (a folder)", name)
			}
			if err := os.MkdirAll(cfg.SrcDir(), 0o755); err != nil {
				return err
			}
			testPath := strings.TrimSuffix(path, ".go") + "_test.go"
			if err := writeNew(path, fmt.Sprintf(src, name)); err != nil {
				return err
			}
			if err := writeNew(testPath, fmt.Sprintf(scaffoldTests[abi], name)); err != nil {
				// Not half a scaffold: the user fixes what is in the way
				// and runs the command again.
				_ = os.Remove(path)
				return err
			}
			fmt.Fprintf(stdout, "wrote %s and %s\ntest: go test %s %s\ntry:  curl 'http://localhost:%d/_PLUGIN/%s/Hello?name=you'\n",
				path, testPath, path, testPath, cfg.HTTP.Port, name)
			return nil
		},
	}
	cmd.Flags().StringVar(&abi, "abi", "standard", "handler ABI: standard (http.HandlerFunc, with the sdk) or legacy (prestd's globals)")
	return cmd
}

// writeNew writes a file that must not exist yet.
func writeNew(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("writing the plugin: %w", err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// scaffoldTests test the scaffolds, by ABI.
var scaffoldTests = map[string]string{
	"legacy": `package main

import (
	"encoding/json"
	"testing"
)

func TestGETHelloHandler(t *testing.T) {
	HTTPVars = map[string]string{"file": "%[1]s", "func": "Hello"}
	URLQuery = map[string][]string{"name": {"ada"}}
	body, status := GETHelloHandler()
	var got map[string]string
	if err := json.Unmarshal([]byte(body), &got); err != nil || status != 200 || got["hello"] != "ada" || got["plugin"] != "%[1]s" {
		t.Fatalf("GETHelloHandler() = %%q, %%d", body, status)
	}
}
`,
	"standard": `package main

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
)

// Outside plugind the sdk has no settings: the handler's defaults apply.
func TestGETHelloHandler(t *testing.T) {
	rec := httptest.NewRecorder()
	GETHelloHandler(rec, httptest.NewRequest("GET", "/_PLUGIN/%[1]s/Hello?name=ada", nil))
	var got map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 || got["hello"] != "ada" || got["greeting"] != "hello" {
		t.Fatalf("GETHelloHandler: %%d %%s", rec.Code, rec.Body)
	}
}
`,
}

// scaffolds are plugin templates by ABI; %[1]s is the plugin name.
var scaffolds = map[string]string{
	"legacy": `// Package main is the plugin %[1]s: GET /_PLUGIN/%[1]s/Hello?name=you
package main

import "encoding/json"

var (
	// HTTPVars holds the route variables of the current request.
	HTTPVars map[string]string
	// URLQuery holds its parsed query string.
	URLQuery map[string][]string
)

// GETHelloHandler answers GET /_PLUGIN/%[1]s/Hello with a greeting.
func GETHelloHandler() (string, int) {
	name := "world"
	if v := URLQuery["name"]; len(v) > 0 {
		name = v[0]
	}
	out, err := json.Marshal(map[string]string{"hello": name, "plugin": HTTPVars["file"]})
	if err != nil {
		return err.Error(), 500
	}
	return string(out), 200
}
`,
	"standard": `// Package main is the plugin %[1]s: GET /_PLUGIN/%[1]s/Hello?name=you
package main

import (
	"encoding/json"
	"net/http"

	"github.com/plugind/plugind/sdk"
)

// GETHelloHandler answers GET /_PLUGIN/%[1]s/Hello with a greeting. Its
// word is a setting, in prest.toml:
//
//	[plugin.%[1]s.settings]
//	greeting = "hi"
func GETHelloHandler(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.URL.Query().Get("name")
	if name == "" {
		name = "world"
	}
	greeting := sdk.Settings(ctx).String("greeting", "hello")
	// The sdk's logger carries the plugin's name and the request id.
	sdk.Logger(ctx).Debug().Str("name", name).Msg("greeting")
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"hello": name, "greeting": greeting, "plugin": sdk.Plugin(ctx)})
}
`,
}

// notBuilt lists, in prebuilt mode, the discovered plugins and middleware
// with no artifact for their current source, and the plugins that may
// run in a process (see buildsOf) with no program for it. prestd's
// prebuilt NAME.so is its own artifact: Cached finds it where it lies.
func notBuilt(cfg config.Config, p *build.Pipeline) []string {
	found, _, err := p.Discover()
	if err == nil {
		var middleware []build.Source
		middleware, _, err = p.DiscoverMiddleware()
		found = append(found, middleware...)
	}
	if err != nil {
		return []string{fmt.Sprintf("cannot read the plugin sources: %v", err)}
	}
	iso, err := server.NewIsolated(cfg, p, zerolog.Nop())
	if err != nil {
		return []string{fmt.Sprintf("isolated plugins: %v", err)}
	}
	if iso != nil {
		defer iso.Close(context.Background()) // nothing was started: returns at once
	}
	var problems []string
	for _, s := range found {
		inProcess, isolated := buildsOf(cfg, s.Name)
		if s.Kind == build.KindPrebuilt {
			inProcess, isolated = true, false // a .so without source runs in-process or not at all
		}
		if inProcess {
			switch _, cached, err := p.Cached(s.Name); {
			case err != nil && !errors.Is(err, loader.ErrNotBuilt):
				problems = append(problems, err.Error()) // unreadable, say: plugind build would not help
			case err != nil || !cached:
				problems = append(problems, fmt.Sprintf("plugin %s has no artifact for its source: run plugind build %s", s.Name, s.Name))
			}
		}
		if isolated && iso != nil && iso.Built(s.Name) != nil {
			problems = append(problems, fmt.Sprintf("plugin %s has no executable to run in a process for its source: run plugind build %s", s.Name, s.Name))
		}
	}
	return problems
}
