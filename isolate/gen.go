package isolate

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"go/types"
	"path/filepath"
	"slices"
	"strings"

	"github.com/plugind/plugind/loader"
)

// mainFile is the name of the generated main in a build directory.
const mainFile = "zz_plugind_main.go"

// model is what the generated main needs to know of a plugin's source:
// read with go/parser, as loader.SourceHandlers reads handlers, so that
// the program serves what the in-process loader would have looked up.
type model struct {
	handlers []loader.HandlerInfo // every exported METHOD<Func>Handler
	globals  []string             // HTTPVars, URLQuery, Settings, Secrets it declares
	sigs     map[string]string    // function name -> type without parameter names
	init     string               // "", "ctx" (func(ctx) error) or "settings" (func(ctx, map) error)
	close    bool
	health   bool
}

// serial reports whether every handler the source declares is prestd's:
// its calls take turns on the globals, one at a time.
func (m *model) serial() bool {
	for _, h := range m.handlers {
		if h.ABI != loader.ABILegacy {
			return false
		}
	}
	return len(m.handlers) > 0
}

// symbol returns the handler named symbol, if the source declares one.
func (m *model) symbol(symbol string) (loader.HandlerInfo, bool) {
	for _, h := range m.handlers {
		if h.Symbol == symbol {
			return h, true
		}
	}
	return loader.HandlerInfo{}, false
}

// globalTypes are the optional globals and the types the loader accepts.
var globalTypes = map[string]string{
	"HTTPVars": "map[string]string",
	"URLQuery": "map[string][]string",
	"Settings": "map[string]any",
	"Secrets":  "map[string]string",
}

// parse reads src's files. A source the in-process loader would refuse
// for a global's or hook's type is refused here too, with its message.
func parse(src loader.Source) (*model, error) {
	m := &model{handlers: loader.SourceHandlers(src), sigs: make(map[string]string)}
	fset := token.NewFileSet()
	for _, file := range src.Files {
		f, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, &loader.Error{Kind: loader.ErrBuild, Plugin: src.Name, Err: err,
				Msg: fmt.Sprintf("plugin %q failed to build", src.Name), Output: relativeOutput(err.Error(), filepath.Dir(file)+string(filepath.Separator))}
		}
		if f.Name.Name != "main" {
			return nil, signatureError(src.Name, "its package is %s; plugins are package main", f.Name.Name)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.GenDecl:
				if err := m.vars(src.Name, d); err != nil {
					return nil, err
				}
			case *ast.FuncDecl:
				if d.Recv != nil {
					continue
				}
				m.sigs[d.Name.Name] = normalise(signature(d.Type))
				if err := m.hook(src.Name, d); err != nil {
					return nil, err
				}
			}
		}
	}
	slices.Sort(m.globals)
	return m, nil
}

func (m *model) vars(plugin string, d *ast.GenDecl) error {
	if d.Tok != token.VAR {
		return nil
	}
	for _, spec := range d.Specs {
		vs := spec.(*ast.ValueSpec)
		for _, n := range vs.Names {
			want, ok := globalTypes[n.Name]
			if !ok {
				continue
			}
			got := ""
			if vs.Type != nil {
				got = types.ExprString(vs.Type)
			}
			if normalise(got) != want {
				return signatureError(plugin, "%s has type %s; want %s", n.Name, orUnknown(got), want)
			}
			m.globals = append(m.globals, n.Name)
		}
	}
	return nil
}

func (m *model) hook(plugin string, fd *ast.FuncDecl) error {
	sig := normalise(signature(fd.Type))
	switch fd.Name.Name {
	case "main":
		return signatureError(plugin, "it declares func main; a plugin's main is generated when it runs in a process")
	case "Init":
		switch sig {
		case "func(context.Context) error":
			m.init = "ctx"
		case "func(context.Context, map[string]any) error":
			m.init = "settings"
		default:
			return signatureError(plugin, "Init has type %s; want func(context.Context) error or func(context.Context, map[string]any) error", sig)
		}
	case "Close", "Health":
		if sig != "func(context.Context) error" {
			return signatureError(plugin, "%s has type %s; want func(context.Context) error", fd.Name.Name, sig)
		}
		if fd.Name.Name == "Close" {
			m.close = true
		} else {
			m.health = true
		}
	}
	return nil
}

// signature is a function type without parameter names.
func signature(ft *ast.FuncType) string {
	list := func(fl *ast.FieldList) []string {
		if fl == nil {
			return nil
		}
		var out []string
		for _, f := range fl.List {
			for range max(1, len(f.Names)) {
				out = append(out, types.ExprString(f.Type))
			}
		}
		return out
	}
	params, results := list(ft.Params), list(ft.Results)
	s := "func(" + strings.Join(params, ", ") + ")"
	switch len(results) {
	case 0:
	case 1:
		s += " " + results[0]
	default:
		s += " (" + strings.Join(results, ", ") + ")"
	}
	return s
}

func normalise(t string) string { return strings.ReplaceAll(t, "interface{}", "any") }

func orUnknown(t string) string {
	if t == "" {
		return "(inferred)"
	}
	return t
}

func signatureError(plugin, format string, args ...any) error {
	return &loader.Error{Kind: loader.ErrSignature, Plugin: plugin,
		Msg: fmt.Sprintf("plugin %q cannot run in a process: ", plugin) + fmt.Sprintf(format, args...)}
}

// generate writes the main that serves m through package child.
// Identifiers are prefixed so that they cannot clash with the plugin's.
func generate(m *model) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`// Code generated by plugind; DO NOT EDIT.

package main

import (
	plugind_context "context"
	plugind_http "net/http"

	plugind_child "github.com/plugind/plugind/isolate/child"
)

var (
	_ plugind_context.Context
	_ plugind_http.Handler
)

func main() {
	plugind_child.Main(plugind_child.Plugin{
`)
	b.WriteString("\t\tLegacy: map[string]func() (string, int){\n")
	for _, h := range m.handlers {
		if h.ABI != loader.ABILegacy {
			continue
		}
		if m.sigs[h.Symbol] == "func() string" {
			fmt.Fprintf(&b, "\t\t\t%q: func() (string, int) { return %s(), 0 },\n", h.Symbol, h.Symbol)
		} else {
			fmt.Fprintf(&b, "\t\t\t%q: %s,\n", h.Symbol, h.Symbol)
		}
	}
	b.WriteString("\t\t},\n\t\tStandard: map[string]func(plugind_http.ResponseWriter, *plugind_http.Request){\n")
	for _, h := range m.handlers {
		if h.ABI == loader.ABIStandard {
			fmt.Fprintf(&b, "\t\t\t%q: %s,\n", h.Symbol, h.Symbol)
		}
	}
	b.WriteString("\t\t},\n")
	for _, g := range m.globals {
		fmt.Fprintf(&b, "\t\t%s: &%s,\n", g, g)
	}
	switch m.init {
	case "ctx":
		b.WriteString("\t\tInit: func(ctx plugind_context.Context, _ map[string]any) error { return Init(ctx) },\n")
	case "settings":
		b.WriteString("\t\tInit: Init,\n")
	}
	if m.close {
		b.WriteString("\t\tClose: Close,\n")
	}
	if m.health {
		b.WriteString("\t\tHealth: Health,\n")
	}
	b.WriteString("\t})\n}\n")
	return format.Source(b.Bytes())
}
