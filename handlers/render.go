package handlers

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// prestd renders every answer through its HandlerSet middleware: with
// ?_renderer=xml the JSON body becomes XML (mxj's layout, inside
// <objects>), and with any renderer an error answer (4xx, 5xx) is wrapped
// as {"error": "<body>"}. plugind does the same for plugin answers when a
// request names a renderer; without one, answers pass as they are.

// renderer is the ?_renderer= value of r: "", "json" or "xml". Other
// values render as JSON, as prestd's do.
func renderer(r *http.Request) string {
	if !strings.Contains(r.URL.RawQuery, "_renderer") {
		return "" // the common case, without parsing the query
	}
	switch f := r.URL.Query().Get("_renderer"); f {
	case "":
		return ""
	case "xml":
		return f
	}
	return "json"
}

// render writes the buffered answer b in format, as prestd would.
func render(w http.ResponseWriter, b *bufferedWriter, format string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, v := range b.header {
		w.Header()[k] = v
	}
	status := b.status
	if status == 0 {
		status = http.StatusOK
	}
	body := b.body.Bytes()
	if status >= 400 {
		body, _ = json.MarshalIndent(map[string]string{"error": strings.TrimSpace(string(body))}, "", "\t")
	}
	w.Header().Del("Content-Length")
	if format == "xml" {
		x, err := jsonToXML(body)
		if err != nil {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<errors><error><reason>internal</reason><internalReason>%s</internalReason></error><code>400</code></errors>", escape(err.Error()))
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		io.WriteString(w, "<objects>")
		w.Write(x)
		io.WriteString(w, "</objects>")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// jsonToXML lays out a JSON object or array as prestd's converter (mxj)
// does: keys sorted, an array as its key repeated, several top-level keys
// (or a top-level array, as <object>s) inside <doc>, null as an empty
// element. Unlike mxj by default, text is escaped: a plugin's strings
// cannot break the document.
func jsonToXML(data []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("the answer is not JSON: %w", err)
	}
	var buf bytes.Buffer
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 1 {
			for k, v := range t {
				writeXML(&buf, k, v)
			}
			return buf.Bytes(), nil
		}
		buf.WriteString("<doc>")
		writeMembers(&buf, t)
		buf.WriteString("</doc>")
	case []any:
		buf.WriteString("<doc>")
		writeXML(&buf, "object", t)
		buf.WriteString("</doc>")
	default:
		return nil, fmt.Errorf("the answer is a JSON %T, not an object or array", v)
	}
	return buf.Bytes(), nil
}

func writeMembers(buf *bytes.Buffer, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		writeXML(buf, k, m[k])
	}
}

func writeXML(buf *bytes.Buffer, name string, v any) {
	name = xmlName(name)
	switch t := v.(type) {
	case []any:
		for _, e := range t {
			writeXML(buf, name, e)
		}
		return
	case nil:
		buf.WriteString("<" + name + "/>")
		return
	}
	buf.WriteString("<" + name + ">")
	switch t := v.(type) {
	case map[string]any:
		writeMembers(buf, t)
	case string:
		buf.WriteString(escape(t))
	case json.Number:
		buf.WriteString(t.String())
	case bool:
		buf.WriteString(strconv.FormatBool(t))
	}
	buf.WriteString("</" + name + ">")
}

// xmlName makes a JSON key a valid element name: characters an XML name
// cannot hold become '_', and one that cannot start it gets a '_' before.
func xmlName(k string) string {
	var b strings.Builder
	for i, c := range k {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c > 0x7f
		if i > 0 {
			ok = ok || c == '-' || c == '.' || c >= '0' && c <= '9'
		}
		switch {
		case ok:
			b.WriteRune(c)
		case i == 0 && (c == '-' || c == '.' || c >= '0' && c <= '9'):
			b.WriteByte('_')
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

func escape(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
