package isolate

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"

	"github.com/rs/zerolog"
)

// keptLines of a child's stderr are kept; a crash reason quotes at most
// quoteLines of them; maxLine bounds one forwarded line.
const (
	keptLines  = quoteLines
	quoteLines = 10
	maxLine    = 8 << 10
)

// lineLog is an io.Writer that forwards a child's output to the server's
// log line by line, with the plugin field. A line that is a zerolog JSON
// object (the sdk's logger in the child writes them) keeps its level,
// message and fields; any other line is logged as it is at level. The
// last lines are kept for crash reasons.
type lineLog struct {
	log    zerolog.Logger
	stream string
	level  zerolog.Level

	mu      sync.Mutex
	partial []byte
	ring    []string
	crash   []string // the start of the last crash report
}

func newLineLog(log zerolog.Logger, stream string, level zerolog.Level) *lineLog {
	return &lineLog{log: log, stream: stream, level: level}
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.partial = append(l.partial, p...)
			if len(l.partial) > maxLine {
				l.emit(l.partial)
				l.partial = l.partial[:0]
			}
			break
		}
		line := p[:i]
		if len(l.partial) > 0 {
			line = append(l.partial, line...)
			l.partial = l.partial[:0]
		}
		l.emit(line)
		p = p[i+1:]
	}
	return n, nil
}

// emit logs one line; l.mu is held.
func (l *lineLog) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) == 0 {
		return
	}
	text := string(line)
	if len(line) > 0 && line[0] == '{' {
		var fields map[string]any
		if json.Unmarshal(line, &fields) == nil {
			level, err := zerolog.ParseLevel(str(fields[zerolog.LevelFieldName]))
			if err != nil || level == zerolog.NoLevel {
				level = l.level
			}
			msg := str(fields[zerolog.MessageFieldName])
			for _, k := range []string{zerolog.LevelFieldName, zerolog.MessageFieldName, zerolog.TimestampFieldName, "plugin"} {
				delete(fields, k)
			}
			l.log.WithLevel(level).Fields(fields).Str("stream", l.stream).Msg(msg)
			if e := str(fields[zerolog.ErrorFieldName]); e != "" {
				msg += ": " + e
			}
			l.keep(msg)
			return
		}
	}
	l.log.WithLevel(l.level).Str("stream", l.stream).Msg(text)
	l.keep(text)
}

func (l *lineLog) keep(s string) {
	switch {
	case crashStart(s):
		l.crash = append(l.crash[:0], s)
	case len(l.crash) > 0 && len(l.crash) < quoteLines:
		l.crash = append(l.crash, s)
	}
	if len(l.ring) == keptLines {
		l.ring = append(l.ring[:0], l.ring[1:]...)
	}
	l.ring = append(l.ring, s)
}

// tail quotes what the child wrote last: the start of its last panic or
// fatal error (the Go runtime's own account of a crash, above a goroutine
// dump that may run to hundreds of lines), else its last lines.
func (l *lineLog) tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.crash) > 0 {
		return strings.Join(l.crash, "\n")
	}
	return strings.Join(l.ring[max(0, len(l.ring)-quoteLines):], "\n")
}

// crashStart reports whether s starts the Go runtime's account of a crash.
func crashStart(s string) bool {
	return strings.HasPrefix(s, "panic: ") || strings.HasPrefix(s, "fatal error: ") ||
		strings.HasPrefix(s, "unexpected signal") || (strings.HasPrefix(s, "SIG") && strings.Contains(s, ": "))
}

// last is the last line.
func (l *lineLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ring) == 0 {
		return ""
	}
	return l.ring[len(l.ring)-1]
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
