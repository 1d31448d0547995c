package admin

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plugind/plugind/loader"
)

func TestParseDiagnostic(t *testing.T) {
	tests := []struct {
		in        string
		ok        bool
		file      string
		line, col int
		msg       string
	}{
		{"hello.go:12:3: undefined: x", true, "hello.go", 12, 3, "undefined: x"},
		{"./hello.go:12: missing return", true, "./hello.go", 12, 0, "missing return"},
		{"report/stats.go:7:10: cannot use y (variable of type int) as string value", true, "report/stats.go", 7, 10, "cannot use y (variable of type int) as string value"},
		{"hello.go:12:3: msg: with: colons", true, "hello.go", 12, 3, "msg: with: colons"},
		{"too many errors", false, "", 0, 0, ""},
		{"hello.go:x:3: nope", false, "", 0, 0, ""},
		{"hello.go:0:3: nope", false, "", 0, 0, ""},
		{"note: module requires Go 1.27 (running go 1.26.8; GOTOOLCHAIN=local)", false, "", 0, 0, ""},
		{"\thave (int)", false, "", 0, 0, ""},
	}
	for _, tt := range tests {
		d, ok := parseDiagnostic(tt.in)
		if ok != tt.ok || ok && (d.File != tt.file || d.Line != tt.line || d.Col != tt.col || d.Msg != tt.msg) {
			t.Errorf("parseDiagnostic(%q) = %+v, %v; want %s:%d:%d %q, %v", tt.in, d, ok, tt.file, tt.line, tt.col, tt.msg, tt.ok)
		}
	}
}

func TestPluginFile(t *testing.T) {
	tests := []struct {
		plugin, file, want string
		ok                 bool
	}{
		{"hello", "hello.go", "hello.go", true},
		{"hello", "./hello.go", "hello.go", true},
		{"report", "report/stats.go", "report/stats.go", true},
		{"report", "./report/report.go", "report/report.go", true},
		{"hello", "other.go", "", false},              // another plugin's source
		{"hello", "report/stats.go", "", false},       // another plugin's folder
		{"report", "report/sub/x.go", "", false},      // not in the package
		{"report", "report/../hello.go", "", false},   // climbs out
		{"hello", "../hello.go", "", false},           // outside the source directory
		{"hello", "/etc/hello.go", "", false},         // absolute
		{"report", "report//stats.go", "", false},     // not clean
		{"report", `report\..\secret.go`, "", false},  // a separator Windows would honour
		{"report", "report/stats.txt", "", false},     // not Go
		{"report", "report/.go", "", false},           // no name
		{"hello", "hello.go/../../etc.go", "", false}, // climbs out
	}
	for _, tt := range tests {
		got, ok := pluginFile(tt.plugin, tt.file)
		if got != tt.want || ok != tt.ok {
			t.Errorf("pluginFile(%q, %q) = %q, %v; want %q, %v", tt.plugin, tt.file, got, ok, tt.want, tt.ok)
		}
	}
}

// numbered is a source of n lines "line 1" ... "line n".
func numbered(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "line %02d\n", i)
	}
	return b.String()
}

func TestDiagnoseQuotesOnlyThePluginsSource(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "src")
	write := func(name, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(src, "hello.go"), numbered(20))
	write(filepath.Join(src, "report", "stats.go"), numbered(5))
	write(filepath.Join(root, "secret.go"), "SECRET\nSECRET\n")
	write(filepath.Join(src, "other.go"), "OTHER\n")
	if err := os.Symlink(filepath.Join(root, "secret.go"), filepath.Join(src, "report", "link.go")); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", maxLineBytes) // cut on a rune boundary
	write(filepath.Join(src, "wide.go"), "package main\n"+long+"\n")

	tests := []struct {
		plugin, output string
		lines          []int // quoted line numbers; nil: none
		hit            int
		first          string // text of the first quoted line
	}{
		{plugin: "hello", output: "hello.go:10:2: undefined: x", lines: []int{7, 8, 9, 10, 11, 12, 13}, hit: 10, first: "line 07"},
		{plugin: "hello", output: "./hello.go:1:1: expected 'package'", lines: []int{1, 2, 3, 4}, hit: 1, first: "line 01"},
		{plugin: "hello", output: "hello.go:20:1: missing return", lines: []int{17, 18, 19, 20}, hit: 20, first: "line 17"},
		{plugin: "hello", output: "hello.go:99:1: past the end", lines: nil},
		{plugin: "report", output: "report/stats.go:3:1: x", lines: []int{1, 2, 3, 4, 5}, hit: 3, first: "line 01"},
		{plugin: "report", output: "report/link.go:1:1: through a link", lines: nil},
		{plugin: "hello", output: "../secret.go:1:1: outside", lines: nil},
		{plugin: "hello", output: filepath.Join(root, "secret.go") + ":1:1: absolute", lines: nil},
		{plugin: "hello", output: "other.go:1:1: another plugin", lines: nil},
		{plugin: "hello", output: "hello.go:3:1: absent file", lines: nil}, // replaced below by a missing plugin
		{plugin: "wide", output: "wide.go:2:1: long", lines: []int{1, 2}, hit: 2, first: "package main"},
	}
	tests[9].plugin, tests[9].output = "gone", "gone.go:3:1: absent file"
	for _, tt := range tests {
		t.Run(tt.output, func(t *testing.T) {
			ds := diagnose(src, tt.plugin, tt.output)
			if len(ds) != 1 {
				t.Fatalf("%d diagnostics, want 1", len(ds))
			}
			var got []int
			hit := 0
			for _, l := range ds[0].Source {
				got = append(got, l.N)
				if l.Hit {
					hit = l.N
				}
				if strings.Contains(l.Text, "SECRET") || strings.Contains(l.Text, "OTHER") {
					t.Fatalf("quoted a file outside the plugin: %q", l.Text)
				}
				if len(l.Text) > maxLineBytes+len("…") {
					t.Fatalf("line of %d bytes quoted", len(l.Text))
				}
			}
			if !slices.Equal(got, tt.lines) || hit != tt.hit {
				t.Fatalf("quoted lines %v, hit %d; want %v, %d", got, hit, tt.lines, tt.hit)
			}
			if tt.lines != nil && ds[0].Source[0].Text != tt.first {
				t.Fatalf("first quoted line %q, want %q", ds[0].Source[0].Text, tt.first)
			}
		})
	}
}

func TestDiagnoseContinuationAndBound(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello.go"), []byte(numbered(40)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	out.WriteString("hello.go:2:1: too many arguments in call\n\thave (int, int)\n\twant (int)\n")
	for i := range maxQuoted + 5 {
		out.WriteString("hello.go:" + strconv.Itoa(i+3) + ":1: more\n")
	}
	out.WriteString("too many errors\n")
	ds := diagnose(src, "hello", out.String())
	if len(ds) != maxQuoted+6 {
		t.Fatalf("%d diagnostics, want %d", len(ds), maxQuoted+6)
	}
	if ds[0].Msg != "too many arguments in call\nhave (int, int)\nwant (int)" {
		t.Fatalf("continuation lines not joined: %q", ds[0].Msg)
	}
	if len(ds[maxQuoted-1].Source) == 0 || len(ds[maxQuoted].Source) != 0 {
		t.Fatalf("want the first %d diagnostics quoted, and no more", maxQuoted)
	}
}

func TestHistory(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "hello.go"), []byte(numbered(3)), 0o644); err != nil {
		t.Fatal(err)
	}
	h := NewHistory(src)
	at := time.Unix(1_800_000_000, 0)
	h.now = func() time.Time { at = at.Add(time.Second); return at }

	for i := range eventsKept + 3 {
		h.Observe(loader.Event{Kind: loader.EventBuilt, Plugin: "hello", Duration: time.Duration(i) * time.Millisecond})
	}
	h.Observe(loader.Event{Kind: loader.EventBuildFailed, Plugin: "hello", Duration: time.Second, Err: &loader.Error{
		Kind: loader.ErrBuild, Msg: `plugin "hello" failed to build`, Output: "hello.go:2:5: undefined: y",
		Err: os.ErrNotExist, // the cause, with paths; never shown
	}})
	h.Observe(loader.Event{Kind: loader.EventLoadFailed, Plugin: "init", Err: &loader.Error{
		Kind: loader.ErrInit, Msg: `plugin "init" failed to initialise`, Detail: "<db> unreachable",
	}})
	h.Observe(loader.Event{Kind: loader.EventLoadFailed, Plugin: "other", Err: os.ErrPermission})

	builds := h.Builds("hello")
	if len(builds) != buildsKept || builds[0].OK || builds[1].Duration != time.Duration(eventsKept+2)*time.Millisecond {
		t.Fatalf("builds: %d, newest %+v; want %d, the failure first, then the last success", len(builds), builds[0], buildsKept)
	}
	b := builds[0]
	if b.Message != `plugin "hello" failed to build` || len(b.Diagnostics) != 1 || len(b.Diagnostics[0].Source) != 3 || !b.Started().Equal(b.Finished.Add(-time.Second)) {
		t.Fatalf("failed build %+v", b)
	}
	if ev := h.Events("hello"); len(ev) != eventsKept || ev[0].Kind != loader.EventBuildFailed {
		t.Fatalf("events: %d, newest %v; want %d, build_failed", len(ev), ev[0].Kind, eventsKept)
	}
	if ev := h.Events("other"); len(ev) != 1 || ev[0].Message != "failed" {
		t.Fatalf("a failure that is not a loader error: %+v; want the message \"failed\", not its cause", ev)
	}
	if ev := h.Events("init"); len(ev) != 1 || ev[0].Detail != "<db> unreachable" {
		t.Fatalf("an Init failure: %+v; want the plugin's own words as its detail", ev)
	}
	if r := h.Recent(); len(r) != eventsKept+6 || r[0].Plugin != "other" {
		t.Fatalf("recent: %d, newest %+v", len(r), r[0])
	}
	if h.Builds("nobody") != nil || h.Events("nobody") != nil {
		t.Fatal("a plugin never seen has history")
	}
}
