// Package cli is plugind's command line: it parses commands and flags,
// loads the configuration, builds the root logger and hands over to the
// package that does the work.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/logbuf"
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
		cfg, err := config.Load(cmd.Flags(), environ)
		if err != nil {
			return err
		}
		out := logbuf.New(stderr, 64<<10, 100*time.Millisecond)
		defer out.Close()
		log := newLogger(out, cfg.Debug)
		s, err := server.New(cmd.Context(), cfg, log)
		if err != nil {
			return err
		}
		return s.ListenAndServe(cmd.Context())
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

// newLogger is the root logger: JSON, one event per line.
func newLogger(w io.Writer, debugMode bool) zerolog.Logger {
	level := zerolog.InfoLevel
	if debugMode {
		level = zerolog.DebugLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}
