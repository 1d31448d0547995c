package build

import "strings"

// Names arrive from URLs. They are checked byte by byte against a strict
// ASCII alphabet before anything touches the disk, so no encoding, dot,
// separator, NUL or look-alike rune can reach a path.

// MaxNameLen bounds plugin names.
const MaxNameLen = 64

// ValidName reports whether s can name a plugin: 1 to MaxNameLen letters,
// digits, '_' or '-', not starting with '-'.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Ignored reports whether a valid plugin name is one that never names a
// plugin: it begins with '_', and the go command ignores files and
// folders so named. Source resolution (and so every request, build,
// listing and reload) applies it; ValidName does not, so that a request
// for such a name is "not found" rather than "invalid".
func Ignored(name string) bool { return name != "" && name[0] == '_' }

// MiddlewareDir is the folder, in the source directory, of middleware
// plugins (prestd's SRC/middlewares/NAME.go), and, beside the source
// directory, of their prebuilt libraries (SRC/../middlewares/NAME.so).
// The folder SRC/middlewares is not an endpoint plugin.
const MiddlewareDir = "middlewares"

// MiddlewareName is the name the middleware plugin file (a valid name)
// has in the pipeline: "middlewares/FILE". Find, Build and Cached take
// it, and it keys the artifact and its manifest entry, so that middleware
// and an endpoint plugin of the same name never share either. No request
// can name it: ValidName refuses the '/'.
func MiddlewareName(file string) string { return MiddlewareDir + "/" + file }

// MiddlewareFile is the inverse of MiddlewareName: the file of a
// middleware's name, and whether name is one.
func MiddlewareFile(name string) (file string, ok bool) {
	return strings.CutPrefix(name, MiddlewareDir+"/")
}
