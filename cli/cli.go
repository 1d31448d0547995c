// Package cli is plugind's command line: it parses commands and flags,
// loads the configuration, builds the root logger and hands over to the
// package that does the work.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/loader"
	"github.com/plugind/plugind/server"
)

// Main runs the command line with args and returns the exit code.
func Main(ctx context.Context, args []string, environ []string, stdout, stderr io.Writer) int {
	root := newRoot(environ, stdout, stderr)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		if err != errSilentExit {
			fmt.Fprintln(stderr, "plugind:", err)
		}
		return 1
	}
	return 0
}

// errSilentExit exits 1 without a message: the command printed its own.
var errSilentExit = errors.New("exit 1")

func newRoot(environ []string, stdout, stderr io.Writer) *cobra.Command {
	serve := func(cmd *cobra.Command, _ []string) error {
		return runServer(cmd, environ, stdout, stderr, false)
	}
	root := &cobra.Command{
		Use:           "plugind",
		Short:         "Serve Go source files in <pluginpath>/src as HTTP endpoints",
		Args:          cobra.NoArgs,
		RunE:          serve,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	config.AddFlags(root.PersistentFlags())
	root.AddCommand(&cobra.Command{
		Use:   "serve",
		Short: "Run the server (the default command)",
		Args:  cobra.NoArgs,
		RunE:  serve,
	})
	root.AddCommand(
		devCommand(environ, stdout, stderr),
		buildCommand(environ, stdout, stderr),
		listCommand(environ, stdout, stderr),
		doctorCommand(environ, stdout, stderr),
		newCommand(environ, stdout),
		&cobra.Command{
			Use:    loader.LoadCheckCommand + " PATH",
			Short:  "Open one plugin artifact and exit (the server runs this to check new plugins)",
			Hidden: true,
			Args:   cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if code := loader.LoadCheckMain(args[0], stderr); code != 0 {
					return errSilentExit
				}
				return nil
			},
		},
	)
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print version, Go version and build settings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, ok := debug.ReadBuildInfo()
			if !ok {
				return fmt.Errorf("no build information in this binary")
			}
			fmt.Fprintf(stdout, "plugind %s\n%s\n", bi.Main.Version, bi.GoVersion)
			for _, s := range bi.Settings {
				fmt.Fprintf(stdout, "  %s=%s\n", s.Key, s.Value)
			}
			return nil
		},
	})
	return root
}

// runServer serves until ctx ends: plugind serve, or plugind dev when
// dev is set.
func runServer(cmd *cobra.Command, environ []string, stdout, stderr io.Writer, dev bool) error {
	var opts []config.LoadOption
	if dev {
		opts = append(opts, config.ForDev())
	}
	cfg, err := config.Load(cmd.Flags(), environ, opts...)
	if err != nil {
		return err
	}
	log, out := newLogger(stderr, cfg.Log.Format, levelFor(cfg))
	defer out.Close()
	for _, w := range cfg.Warnings {
		log.Warn().Msg(w)
	}
	if !dev {
		s, err := server.New(cmd.Context(), cfg, log)
		if err != nil {
			return err
		}
		if cfg.Plugins.Reload == config.ReloadOff {
			log.Info().Msg("hot reload off (plugins.reload)")
		}
		return s.ListenAndServe(cmd.Context())
	}
	events := newDevLog(log)
	s, err := server.New(cmd.Context(), cfg, log, server.OnPluginEvent(events.event))
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return err
	}
	out.Flush() // the start-up lines, then the banner
	printBanner(stdout, cfg, ln.Addr(), s.Plugins())
	return s.Serve(cmd.Context(), ln)
}
