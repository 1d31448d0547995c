package console_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/console"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{450 * time.Microsecond, "450µs"},
		{812345 * time.Microsecond, "812ms"},
		{999 * time.Millisecond, "999ms"},
		{1234 * time.Millisecond, "1.2s"},
		{42 * time.Second, "42.0s"},
		{125*time.Second + 300*time.Millisecond, "2m5s"},
		{-time.Second, "-1s"},
	}
	for _, tt := range tests {
		if got := console.Duration(tt.d); got != tt.want {
			t.Errorf("Duration(%d) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestWriter(t *testing.T) {
	const ts = "2026-11-30T01:02:03Z"
	at, _ := time.Parse(time.RFC3339, ts)
	clock := at.Local().Format("15:04:05")
	tests := []struct {
		name  string
		event string // as zerolog writes it
		want  string
	}{
		{
			name:  "fields, plugin first",
			event: `{"level":"info","plugin":"hello","kind":"file","time":"` + ts + `","message":"plugin registered"}`,
			want:  clock + " INF plugin registered plugin=hello kind=file\n",
		},
		{
			name:  "access log duration in milliseconds",
			event: `{"level":"info","request_id":"r1","plugin":"hello","func":"Hello","method":"GET","path":"/_PLUGIN/hello/Hello","status":200,"size":12,"duration":0.4512,"time":"` + ts + `","message":"request"}`,
			want:  clock + " INF request plugin=hello func=Hello method=GET path=/_PLUGIN/hello/Hello status=200 duration=451µs request_id=r1 size=12\n",
		},
		{
			name:  "build durations",
			event: `{"level":"info","plugin":"report","duration":1234.5,"ok":true,"time":"` + ts + `","message":"plugin build finished"}`,
			want:  clock + " INF plugin build finished plugin=report duration=1.2s ok=true\n",
		},
		{
			name:  "shutdown delay and timeout",
			event: `{"level":"info","delay":0,"timeout":20000,"time":"` + ts + `","message":"shutting down"}`,
			want:  clock + " INF shutting down delay=0s timeout=20.0s\n",
		},
		{
			name:  "a number that is not a duration stays a number",
			event: `{"level":"info","bytes":2048,"versions":3,"time":"` + ts + `","message":"plugin reloaded"}`,
			want:  clock + " INF plugin reloaded bytes=2048 versions=3\n",
		},
		{
			name:  "a panic: its value in the message, its stack below",
			event: `{"level":"error","request_id":"r2","plugin":"panics","func":"Boom","stack":"goroutine 7 [running]:\nmain.GETBoomHandler()\n\t/src/panics.go:9 +0x1d\n","error":"plugin \"panics\": GETBoomHandler panicked: panic: boom","status":500,"time":"` + ts + `","message":"request failed"}`,
			want: clock + ` ERR request failed: plugin "panics": GETBoomHandler panicked: panic: boom plugin=panics func=Boom status=500 request_id=r2` +
				"\n    goroutine 7 [running]:\n    main.GETBoomHandler()\n    \t/src/panics.go:9 +0x1d\n",
		},
		{
			name:  "an error without a stack stays a field",
			event: `{"level":"warn","error":"reload is off","time":"` + ts + `","message":"hot reload is off: cannot watch plugin sources"}`,
			want:  clock + " WRN hot reload is off: cannot watch plugin sources error=\"reload is off\"\n",
		},
		{
			name:  "compiler output below the line",
			event: `{"level":"error","plugin":"report","error":"plugin \"report\" failed to build","output":"report.go:12:2: undefined: x\nreport.go:13:2: undefined: y","duration":812,"ok":false,"time":"` + ts + `","message":"plugin build finished"}`,
			want: clock + ` ERR plugin build finished error="plugin \"report\" failed to build" plugin=report duration=812ms ok=false` +
				"\n    report.go:12:2: undefined: x\n    report.go:13:2: undefined: y\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if _, err := console.NewWriter(&buf, false).Write([]byte(tt.event + "\n")); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// levels records the level each write came with.
type levels struct {
	bytes.Buffer
	got []zerolog.Level
}

func (l *levels) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	l.got = append(l.got, level)
	return l.Write(p)
}

// TestLogger goes through a real zerolog logger: Dur's numbers, in
// zerolog's unit, come out with units, and the output writer still hears
// each event's level (logbuf flushes warnings at once by it).
func TestLogger(t *testing.T) {
	out := &levels{}
	log := zerolog.New(console.NewWriter(out, false))
	log.Info().Str("plugin", "report").Dur("duration", 812*time.Millisecond).Msg("plugin build finished")
	log.Error().Str("stack", "goroutine 1 [running]:\n").Err(errors.New("panic: boom")).Msg("request failed")
	want := "<nil> INF plugin build finished plugin=report duration=812ms\n" +
		"<nil> ERR request failed: panic: boom\n    goroutine 1 [running]:\n"
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
	if fmt.Sprint(out.got) != fmt.Sprint([]zerolog.Level{zerolog.InfoLevel, zerolog.ErrorLevel}) {
		t.Errorf("levels passed on: %v", out.got)
	}
	if strings.Contains(out.String(), "\x1b[") {
		t.Error("colour without color")
	}
}
