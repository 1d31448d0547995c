package admin

import (
	"bytes"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Bounds of the source quoted around diagnostics.
const (
	contextLines   = 3       // lines quoted before and after the one named
	maxQuoted      = 20      // diagnostics quoted per build
	maxSourceBytes = 1 << 20 // larger files are not quoted
	maxLineBytes   = 400     // longer lines are cut
)

// Diagnostic is one compiler message that names a place in the source.
type Diagnostic struct {
	File      string // as the compiler printed it, relative to the source directory
	Line, Col int    // Col 0: not given
	Msg       string // with its continuation lines
	// Source is the lines around Line, read from the plugin's own source;
	// empty when File is not one of its files.
	Source []SourceLine
}

// SourceLine is one quoted source line.
type SourceLine struct {
	N    int
	Text string
	Hit  bool // the line the diagnostic names
}

// parseDiagnostic reads "file.go:line:col: msg" or "file.go:line: msg".
func parseDiagnostic(s string) (Diagnostic, bool) {
	file, rest, ok := strings.Cut(s, ".go:")
	if !ok || file == "" || strings.ContainsAny(file, " \t") {
		return Diagnostic{}, false
	}
	d := Diagnostic{File: file + ".go"}
	num, rest, ok := strings.Cut(rest, ":")
	if d.Line, _ = strconv.Atoi(num); !ok || d.Line <= 0 {
		return Diagnostic{}, false
	}
	if num, after, ok := strings.Cut(rest, ":"); ok {
		if col, err := strconv.Atoi(num); err == nil && col > 0 {
			d.Col, rest = col, after
		}
	}
	d.Msg = strings.TrimSpace(rest)
	return d, true
}

// diagnose finds the diagnostics in a build's output and quotes the
// source around each, from plugin's files in srcDir only.
func diagnose(srcDir, plugin, output string) []Diagnostic {
	var out []Diagnostic
	for _, line := range strings.Split(output, "\n") {
		if d, ok := parseDiagnostic(line); ok {
			out = append(out, d)
			continue
		}
		// Continuation lines ("\thave (...)") belong to the message above.
		if n := len(out); n > 0 && strings.HasPrefix(line, "\t") {
			out[n-1].Msg += "\n" + strings.TrimSpace(line)
		}
	}
	files := make(map[string][]string) // read once per build
	for i := range out {
		if i == maxQuoted {
			break
		}
		d := &out[i]
		rel, ok := pluginFile(plugin, d.File)
		if !ok {
			continue
		}
		lines, seen := files[rel]
		if !seen {
			lines = readLines(filepath.Join(srcDir, filepath.FromSlash(rel)))
			files[rel] = lines
		}
		for n := max(1, d.Line-contextLines); n <= min(len(lines), d.Line+contextLines); n++ {
			d.Source = append(d.Source, SourceLine{N: n, Text: lines[n-1], Hit: n == d.Line})
		}
	}
	return out
}

// pluginFile returns, for a file named in compiler output, its path
// relative to the source directory if it is one of plugin's files: NAME.go
// or NAME/FILE.go. Nothing else is ever read.
func pluginFile(plugin, file string) (string, bool) {
	file = strings.TrimPrefix(file, "./")
	if path.Clean(file) != file || strings.Contains(file, `\`) {
		return "", false
	}
	if file == plugin+".go" {
		return file, true
	}
	dir, base, ok := strings.Cut(file, "/")
	if !ok || dir != plugin || strings.Contains(base, "/") || !strings.HasSuffix(base, ".go") || base == ".go" {
		return "", false
	}
	return file, true
}

// readLines reads a regular file (not a link: it could lead out of the
// source directory) of at most maxSourceBytes; nil if it cannot.
func readLines(name string) []string {
	fi, err := os.Lstat(name)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxSourceBytes {
		return nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSourceBytes+1))
	if err != nil || len(data) > maxSourceBytes {
		return nil
	}
	lines := strings.Split(string(bytes.TrimSuffix(data, []byte("\n"))), "\n")
	for i, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		if len(l) > maxLineBytes {
			l = strings.ToValidUTF8(l[:maxLineBytes], "") + "…"
		}
		lines[i] = l
	}
	return lines
}
