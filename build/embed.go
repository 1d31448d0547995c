package build

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// embedded lists the files that //go:embed directives in the Go files
// files embed, as the go command resolves them: patterns relative to
// each file's directory, globs matched there, a directory embedding the
// files under it but those whose names begin with "." or "_" (all of
// them with the "all:" prefix). Sorted, without duplicates. A pattern
// that matches nothing is left to the compiler to report.
func embedded(files []string) ([]string, error) {
	var out []string
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		if !bytes.Contains(data, []byte("//go:embed")) {
			continue
		}
		dir := filepath.Dir(file)
		for _, line := range strings.Split(string(data), "\n") {
			rest, ok := strings.CutPrefix(strings.TrimSpace(line), "//go:embed")
			if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
				continue
			}
			for _, pattern := range embedPatterns(rest) {
				all := strings.HasPrefix(pattern, "all:")
				pattern = strings.TrimPrefix(pattern, "all:")
				matches, _ := filepath.Glob(filepath.Join(dir, filepath.FromSlash(pattern)))
				for _, m := range matches {
					out = append(out, embeddedUnder(m, all)...)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// embedPatterns splits a //go:embed directive's arguments: space
// separated, each may be a Go string literal ("a b.txt", `c`).
func embedPatterns(args string) []string {
	var out []string
	for args = strings.TrimSpace(args); args != ""; args = strings.TrimSpace(args) {
		if args[0] == '"' || args[0] == '`' {
			end := strings.IndexByte(args[1:], args[0])
			if end < 0 {
				return out // the compiler will say
			}
			if p, err := strconv.Unquote(args[:end+2]); err == nil {
				out = append(out, p)
			}
			args = args[end+2:]
			continue
		}
		p, rest, _ := strings.Cut(args, " ")
		out = append(out, strings.TrimSpace(p))
		args = rest
	}
	return out
}

// embeddedUnder is what a match of an embed pattern embeds: the file
// itself, or a directory's files (see embedded).
func embeddedUnder(match string, all bool) []string {
	fi, err := os.Stat(match)
	if err != nil {
		return nil
	}
	if !fi.IsDir() {
		return []string{match}
	}
	var out []string
	_ = filepath.WalkDir(match, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == match {
			return nil
		}
		if !all && (strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// embedDigest digests the files the Go files files embed (see
// embedded), named relative to base, stamping each first with stamp
// (nil: none); "" when they embed nothing.
func embedDigest(files []string, base string, stamp func(path string) error) (string, error) {
	emb, err := embedded(files)
	if err != nil || len(emb) == 0 {
		return "", err
	}
	h := sha256.New()
	for _, file := range emb {
		if stamp != nil {
			if err := stamp(file); err != nil {
				return "", err
			}
		}
		if err := hashFile(h, file, base); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashFile writes file's name relative to base, its size and its
// content into h.
func hashFile(h io.Writer, file, base string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(base, file)
	if err != nil {
		rel = file
	}
	fmt.Fprintf(h, "%s %d\n", filepath.ToSlash(rel), len(data))
	_, err = h.Write(data)
	return err
}
