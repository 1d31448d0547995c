package cli

import (
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/plugind/plugind/config"
	"github.com/plugind/plugind/internal/console"
	"github.com/plugind/plugind/internal/logbuf"
)

// newLogger is the root logger on stderr, in the format log.format names:
// JSON, one event per line, or lines for people ("console", and "auto"
// on a terminal). Info and debug events are batched; close the returned
// writer to flush them.
func newLogger(stderr io.Writer, format string, level zerolog.Level) (zerolog.Logger, *logbuf.Writer) {
	buf := logbuf.New(stderr, 64<<10, 100*time.Millisecond)
	var w io.Writer = buf
	tty := isTerminal(stderr)
	if format == config.LogConsole || format == config.LogAuto && tty {
		w = console.NewWriter(buf, tty)
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), buf
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// levelFor is the root level: debug events in debug mode.
func levelFor(cfg config.Config) zerolog.Level {
	if cfg.Debug {
		return zerolog.DebugLevel
	}
	return zerolog.InfoLevel
}
