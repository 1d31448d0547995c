package handlers

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"
)

func TestRenderer(t *testing.T) {
	const hello = `{"http_vars":{"file":"hello","func":"Hello"},"url_query":{"abc":["123"]},"msg":"Hello plugin caller!"}`
	tests := []struct {
		name, query, answer string
		status              int
		wantStatus          int
		wantType, wantBody  string
	}{
		{"no renderer", "", hello, 200, 200, "application/json", hello},
		{"json", "_renderer=json", hello, 200, 200, "application/json", hello},
		{"xml", "_renderer=xml", hello, 200, 200, "application/xml",
			`<objects><doc><http_vars><file>hello</file><func>Hello</func></http_vars><msg>Hello plugin caller!</msg><url_query><abc>123</abc></url_query></doc></objects>`},
		{"xml, one key", "_renderer=xml", `{"a":1}`, 201, 201, "application/xml", `<objects><a>1</a></objects>`},
		{"xml, array", "_renderer=xml", `[1,{"b":null}]`, 200, 200, "application/xml", `<objects><doc><object>1</object><object><b/></object></doc></objects>`},
		{"xml escapes text", "_renderer=xml", `{"a":"<x>&","b":true}`, 200, 200, "application/xml", `<objects><doc><a>&lt;x&gt;&amp;</a><b>true</b></doc></objects>`},
		{"xml, not JSON", "_renderer=xml", `plain`, 200, 400, "application/xml", ""},
		{"json, an error answer", "_renderer=json", `no such row`, 404, 404, "application/json", "{\n\t\"error\": \"no such row\"\n}"},
		{"xml, an error answer", "_renderer=xml", `no such row`, 404, 404, "application/xml", `<objects><error>no such row</error></objects>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Log: zerolog.Nop(), Plugins: servePlugin(func(w http.ResponseWriter, r *http.Request) error {
				w.WriteHeader(tt.status)
				_, err := io.WriteString(w, tt.answer)
				return err
			})}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/_PLUGIN/p/X?"+tt.query, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantType != "" && tt.query != "" && rec.Header().Get("Content-Type") != tt.wantType {
				t.Errorf("Content-Type %q, want %q", rec.Header().Get("Content-Type"), tt.wantType)
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("body %s\nwant %s", rec.Body, tt.wantBody)
			}
		})
	}
}
