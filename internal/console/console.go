// Package console writes zerolog's JSON events as lines for a person at a
// terminal: time, level, message, then fields, the plugin's first.
// Durations logged with zerolog's Dur read "812ms" or "1.2s" instead of a
// bare number of milliseconds; a panic's value joins the message and its
// stack, like a compiler's output, follows on lines of its own.
//
// Only the writer changes: events are built as JSON, as everywhere else,
// and no zerolog global is touched.
package console

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// isDuration reports whether a number in field is a duration in
// zerolog.DurationFieldUnit (what Dur writes): the names plugind logs
// durations under, and any ending in "_duration".
func isDuration(field string) bool {
	switch field {
	case "duration", "delay", "timeout", "elapsed", "wait", "took", "queued", "running_for", "restart_in", "exec_to_healthy":
		return true
	}
	return strings.HasSuffix(field, "_duration")
}

// Multi-line text fields, printed below the event's line in this order
// instead of as one quoted field.
const outputField, stackField = "output", "stack"

// Writer formats events for people and writes one line (and any blocks)
// per event to its output.
type Writer struct {
	cw  zerolog.ConsoleWriter
	out io.Writer
}

var _ zerolog.LevelWriter = Writer{}

// NewWriter returns a Writer to out, with ANSI colours if color. When out
// is a zerolog.LevelWriter (a logbuf.Writer, say) it receives each event's
// level too.
func NewWriter(out io.Writer, color bool) Writer {
	return Writer{out: out, cw: zerolog.ConsoleWriter{
		Out:           out,
		NoColor:       !color,
		TimeFormat:    "15:04:05",
		FieldsOrder:   []string{"plugin", "func", "method", "path", "status", "duration"}, // what an author looks for first
		FieldsExclude: []string{outputField, stackField},
		FormatPrepare: prepare,
		FormatExtra:   blocks,
	}}
}

// Write formats one event.
func (w Writer) Write(p []byte) (int, error) { return w.cw.Write(p) }

// WriteLevel formats one event of level l.
func (w Writer) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	lw, ok := w.out.(zerolog.LevelWriter)
	if !ok {
		return w.cw.Write(p)
	}
	cw := w.cw
	cw.Out = levelOut{lw, l}
	return cw.Write(p)
}

// levelOut hands the formatted line to a LevelWriter with its level.
type levelOut struct {
	w zerolog.LevelWriter
	l zerolog.Level
}

func (o levelOut) Write(p []byte) (int, error) { return o.w.WriteLevel(o.l, p) }

// prepare rewrites durations with units and, for a panic (an event with a
// stack), moves the error into the message.
func prepare(evt map[string]any) error {
	for k, v := range evt {
		n, ok := v.(json.Number)
		if !ok || !isDuration(k) {
			continue
		}
		f, err := n.Float64()
		if err != nil {
			continue
		}
		// A json.Number is written as it is: "450µs" unquoted.
		evt[k] = json.Number(Duration(time.Duration(f * float64(zerolog.DurationFieldUnit))))
	}
	if s, _ := evt[stackField].(string); s != "" {
		if e, ok := evt[zerolog.ErrorFieldName]; ok {
			msg, _ := evt[zerolog.MessageFieldName].(string)
			if msg != "" {
				msg += ": "
			}
			evt[zerolog.MessageFieldName] = msg + toString(e)
			delete(evt, zerolog.ErrorFieldName)
		}
	}
	return nil
}

// blocks writes the multi-line fields below the line, indented.
func blocks(evt map[string]any, buf *bytes.Buffer) error {
	for _, k := range []string{outputField, stackField} {
		s, _ := evt[k].(string)
		if s = strings.TrimRight(s, "\n"); s == "" {
			continue
		}
		for line := range strings.SplitSeq(s, "\n") {
			buf.WriteString("\n    ")
			buf.WriteString(line)
		}
	}
	return nil
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// Duration formats d for people: "450µs", "812ms", "1.2s", "2m5s".
func Duration(d time.Duration) string {
	switch {
	case d < 0:
		return d.String()
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	default:
		return d.Round(time.Second).String()
	}
}
