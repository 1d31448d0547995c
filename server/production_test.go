package server_test

import (
	"bufio"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/plugind/plugind/internal/plugintest"
)

// request sends method path with headers to srv.
func (r *running) request(t *testing.T, method, path string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, r.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func TestAuth(t *testing.T) {
	const key, jwtKey = "api-key-0123456789", "jwt-signing-secret"
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(jwtKey))
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("not-the-key"))
	srv := startConfig(t, loadConfig(t, plugintest.PluginPath(t, "counter", "hello"), fmt.Sprintf(`
[auth]
apikeys = [%q]

[jwt]
key = %q
default = true

[plugin.hello]
apikeys = ["hello-only-key"]
`, key, jwtKey)))

	tests := []struct {
		name, path string
		header     map[string]string
		status     int
	}{
		{"no credentials", "/_PLUGIN/counter/Count", nil, 401},
		{"wrong key", "/_PLUGIN/counter/Count", map[string]string{"X-API-Key": key + "x"}, 401},
		{"forged token", "/_PLUGIN/counter/Count", map[string]string{"Authorization": "Bearer " + forged}, 401},
		{"key", "/_PLUGIN/counter/Count", map[string]string{"X-API-Key": key}, 200},
		{"key as bearer", "/_PLUGIN/counter/Count", map[string]string{"Authorization": "Bearer " + key}, 200},
		{"token", "/_PLUGIN/counter/Count", map[string]string{"Authorization": "Bearer " + good}, 200},
		{"operator key on a plugin with its own", "/_PLUGIN/hello/Hello", map[string]string{"X-API-Key": key}, 200},
		{"token on a plugin with its own keys", "/_PLUGIN/hello/Hello", map[string]string{"Authorization": "Bearer " + good}, 401},
		{"plugin key", "/_PLUGIN/hello/Hello", map[string]string{"X-API-Key": "hello-only-key"}, 200},
		{"admin listing", "/_PLUGINS", nil, 401},
		{"admin listing with a plugin key", "/_PLUGINS", map[string]string{"X-API-Key": "hello-only-key"}, 401},
		{"admin listing with a token", "/_PLUGINS", map[string]string{"Authorization": "Bearer " + good}, 401},
		{"admin listing with an operator key", "/_PLUGINS", map[string]string{"X-API-Key": key}, 200},
		{"prestd's health route", "/_health", nil, 200},
		{"healthz stays open", "/healthz", nil, 200},
		{"readyz stays open", "/readyz", nil, 200},
		{"metrics stay open", "/metrics", nil, 200},
	}
	// The counter's globals live as long as the process: count from here.
	before, _ := strconv.Atoi(srv.request(t, "GET", "/_PLUGIN/counter/Count", map[string]string{"X-API-Key": key}).body)
	for _, tt := range tests {
		got := srv.request(t, "GET", tt.path, tt.header)
		if got.status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, got.status, got.body, tt.status)
		}
		if got.status == 401 && (got.header.Get("WWW-Authenticate") == "" || !strings.HasPrefix(got.body, `{"error":"unauthorized`)) {
			t.Errorf("%s: 401 without WWW-Authenticate or JSON: %v %s", tt.name, got.header, got.body)
		}
	}
	// Refused requests never reached the plugin: three calls got through.
	if got := srv.request(t, "GET", "/_PLUGIN/counter/Count", map[string]string{"X-API-Key": key}); got.body != fmt.Sprint(before+4) {
		t.Errorf("the plugin saw %s calls, want %d (3 authorised after the first)", got.body, before+4)
	}
	for _, secret := range []string{key, jwtKey, good, "hello-only-key"} {
		if strings.Contains(srv.logs.String(), secret) {
			t.Errorf("a credential reached the log: %.12s...", secret)
		}
	}
}

func TestCORS(t *testing.T) {
	srv := startConfig(t, loadConfig(t, plugintest.PluginPath(t, "counter", "hello"), `
[cors]
alloworigin = ["https://app.example"]

[plugin.hello.cors]
alloworigin = ["https://hello.example"]
`))
	// The counter's globals live as long as the process: count from here.
	before, _ := strconv.Atoi(srv.request(t, "GET", "/_PLUGIN/counter/Count", nil).body)
	preflight := func(path, origin string) response {
		return srv.request(t, "OPTIONS", path, map[string]string{"Origin": origin, "Access-Control-Request-Method": "GET"})
	}
	tests := []struct {
		name, path, origin string
		allowed            bool
	}{
		{"allowed origin", "/_PLUGIN/counter/Count", "https://app.example", true},
		{"refused origin", "/_PLUGIN/counter/Count", "https://evil.example", false},
		{"plugin policy", "/_PLUGIN/hello/Hello", "https://hello.example", true},
		{"global origin on a plugin with its own", "/_PLUGIN/hello/Hello", "https://app.example", false},
	}
	for _, tt := range tests {
		got := preflight(tt.path, tt.origin)
		if allowed := got.header.Get("Access-Control-Allow-Origin") == tt.origin; allowed != tt.allowed || got.status >= 300 {
			t.Errorf("%s: %d, Access-Control-Allow-Origin %q", tt.name, got.status, got.header.Get("Access-Control-Allow-Origin"))
		}
	}
	got := srv.request(t, "GET", "/_PLUGIN/counter/Count", map[string]string{"Origin": "https://app.example"})
	if got.body != fmt.Sprint(before+1) || got.header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("actual request: call %s (%d before the preflights), ACAO %q; preflights must not reach the plugin", got.body, before, got.header.Get("Access-Control-Allow-Origin"))
	}
}

func TestHeadersAndCompression(t *testing.T) {
	srv := startConfig(t, loadConfig(t, plugintest.PluginPath(t, "counter"), ""))
	for _, path := range []string{"/_PLUGIN/counter/Count", "/_PLUGIN/nosuch/X", "/healthz"} {
		h := srv.request(t, "GET", path, nil).header
		for k, want := range map[string]string{
			"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
		} {
			if h.Get(k) != want {
				t.Errorf("%s: %s = %q, want %q", path, k, h.Get(k), want)
			}
		}
		if h.Get("Strict-Transport-Security") != "" || h.Get("X-Request-Id") == "" {
			t.Errorf("%s: HSTS without TLS, or no request id: %v", path, h)
		}
	}
	big := srv.request(t, "GET", "/_PLUGIN/counter/Big", map[string]string{"Accept-Encoding": "gzip"})
	if big.header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("8 KB to a gzip client: Content-Encoding %q", big.header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(strings.NewReader(big.body))
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(zr)
	if string(plain) != strings.Repeat("plugind ", 1024) || len(big.body) > 200 {
		t.Errorf("gzip body: %d bytes compressed, %d plain", len(big.body), len(plain))
	}
	if small := srv.request(t, "GET", "/_PLUGIN/counter/Count", map[string]string{"Accept-Encoding": "gzip"}); small.header.Get("Content-Encoding") != "" {
		t.Error("a tiny body was compressed")
	}
	if raw := srv.request(t, "GET", "/_PLUGIN/counter/Big", nil); raw.header.Get("Content-Encoding") != "" || len(raw.body) != 8192 {
		t.Error("a client without gzip got a compressed body")
	}
}

func TestMetrics(t *testing.T) {
	dir := plugintest.PluginPath(t, "counter")
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "fresh.go", plugintest.Unique(t, "package main\n\nfunc GETFHandler() string { return \"f\" }\n"))
	srv := startConfig(t, loadConfig(t, dir, ""))
	for range 3 {
		srv.request(t, "GET", "/_PLUGIN/counter/Count", nil)
	}
	if got := srv.request(t, "GET", "/_PLUGIN/fresh/F", nil); got.status != 200 {
		t.Fatalf("fresh: %d %s", got.status, got.body)
	}
	srv.request(t, "GET", "/_PLUGIN/nosuch/X", nil)
	srv.request(t, "GET", "/_PLUGIN/counter/Random123", nil)
	srv.request(t, "PROPFIND", "/_PLUGIN/counter/Count", nil)

	got := srv.request(t, "GET", "/metrics", nil)
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(got.body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	value := func(family string, labels map[string]string) float64 {
		f, ok := families[family]
		if !ok {
			t.Fatalf("no %s", family)
		}
	metrics:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
		return 0
	}
	checks := []struct {
		family string
		labels map[string]string
		want   float64
	}{
		{"plugind_requests_total", map[string]string{"plugin": "counter", "func": "Count", "method": "GET", "status": "200"}, 3},
		{"plugind_requests_total", map[string]string{"plugin": "", "func": "", "method": "GET", "status": "404"}, 2},
		{"plugind_requests_total", map[string]string{"plugin": "", "method": "OTHER", "status": "405"}, 1},
		{"plugind_request_duration_seconds", map[string]string{"plugin": "counter", "method": "GET"}, 3},
		{"plugind_builds_total", map[string]string{"plugin": "fresh", "outcome": "ok"}, 1},
		{"plugind_build_duration_seconds", map[string]string{"plugin": "fresh"}, 1},
		{"plugind_plugin_loaded_versions", map[string]string{"plugin": "counter"}, 1},
		{"plugind_plugin_events_total", map[string]string{"plugin": "fresh", "event": "loaded"}, 1},
		{"plugind_requests_in_flight", nil, 1}, // the scrape itself
	}
	for _, c := range checks {
		if got := value(c.family, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.family, c.labels, got, c.want)
		}
	}
	if value("plugind_plugin_loaded_bytes", map[string]string{"plugin": "counter"}) <= 0 {
		t.Error("no loaded bytes")
	}
	// Labels stay bounded: the random function name appears nowhere.
	if strings.Contains(got.body, "Random123") {
		t.Error("a client-chosen name became a label value")
	}

}

func TestSlowClientsAndBodies(t *testing.T) {
	cfg := loadConfig(t, plugintest.PluginPath(t, "slow"), `
[http]
readheadertimeout = "300ms"
maxbodybytes = 64
`)
	srv := startConfig(t, cfg)

	// Slow loris: headers that never end are cut off.
	conn, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /_PLUGIN/slow/Standard HTTP/1.1\r\nHost: x\r\n")
	began := time.Now()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	for {
		if _, err := conn.Read(buf); err != nil {
			break
		}
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("a slow-header client kept its connection for %s", took)
	}

	got := srv.do(t, "POST", "/_PLUGIN/slow/Body", strings.Repeat("x", 100))
	if got.status != 413 || !strings.Contains(got.body, "the limit is 64") {
		t.Errorf("declared oversized body: %d %s", got.status, got.body)
	}
	// An undeclared (chunked) body is cut off at the limit.
	req, _ := http.NewRequest("POST", srv.url+"/_PLUGIN/slow/Body", io.MultiReader(strings.NewReader(strings.Repeat("y", 100))))
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked oversized body: %d", resp.StatusCode)
	}
}

func TestShutdownDelayDrains(t *testing.T) {
	cfg := loadConfig(t, plugintest.PluginPath(t, "slow"), `
[lifecycle]
serverShutdownDelay = "1s"
serverShutdownTimeout = "5s"
`)
	srv := startConfig(t, cfg)
	srv.do(t, "GET", "/_PLUGIN/slow/Standard?d=0s", "")
	done := make(chan response, 1)
	go func() {
		resp, err := http.Get(srv.url + "/_PLUGIN/slow/Standard?d=1500ms")
		if err != nil {
			done <- response{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- response{status: resp.StatusCode, body: string(b)}
	}()
	srv.waitInFlight(t, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- srv.stop() }()
	// During the delay: still serving, but no longer ready.
	for deadline := time.Now().Add(900 * time.Millisecond); ; time.Sleep(10 * time.Millisecond) {
		got := srv.do(t, "GET", "/readyz", "")
		if got.status == 503 && strings.Contains(got.body, "shutting down") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz during the shutdown delay: %d %s", got.status, got.body)
		}
	}
	if got := srv.do(t, "GET", "/_PLUGIN/slow/Standard?d=0s", ""); got.status != 200 {
		t.Errorf("a request during the delay: %d", got.status)
	}
	if got := <-done; got.status != 200 || got.body != "slept" {
		t.Errorf("the in-flight request: %d %q", got.status, got.body)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func TestStartupPause(t *testing.T) {
	dir := plugintest.PluginPath(t, "hello")
	// A middleware that has to be built: start-up takes a while.
	plugintest.WriteFile(t, filepath.Join(dir, "src"), "mw.go", plugintest.Unique(t, `package main

import "net/http"

func TagMiddlewareLoad(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Tag", "yes")
		next.ServeHTTP(w, r)
	})
}
`))
	cfg := loadConfig(t, dir, `
pluginmiddlewarelist = [{file = "mw", func = "Tag"}]

[lifecycle]
startupRequestPauseTimeout = "2m"
`)
	r := startLoose(t, cfg)
	ready := r.request(t, "GET", "/readyz", nil)
	got := r.request(t, "GET", "/_PLUGIN/hello/Hello", nil)
	if ready.status != 503 || !strings.Contains(ready.body, "starting") {
		t.Errorf("readyz while starting: %d %s", ready.status, ready.body)
	}
	if got.status != 200 || got.header.Get("X-Tag") != "yes" {
		t.Errorf("a request during start-up: %d %v; want it to wait and pass the middleware", got.status, got.header)
	}
}

// selfSigned writes a certificate for 127.0.0.1 with serial n and its key.
func selfSigned(t *testing.T, dir string, n int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "plugind test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	plugintest.WriteFile(t, dir, "key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})))
	plugintest.WriteFile(t, dir, "cert.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

func TestTLSWithCertificateReload(t *testing.T) {
	dir := t.TempDir()
	selfSigned(t, dir, 1)
	cfg := loadConfig(t, plugintest.PluginPath(t, "counter"), fmt.Sprintf(`
[https]
mode = true
cert = %q
key = %q
`, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")))
	r := startLoose(t, cfg)
	serial := func() (int64, http.Header) {
		conn, err := tls.Dial("tcp", r.addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprint(conn, "GET /_PLUGIN/counter/Count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), resp.Header
	}
	s, h := serial()
	if s != 1 || !strings.HasPrefix(h.Get("Strict-Transport-Security"), "max-age=") {
		t.Fatalf("serial %d, HSTS %q", s, h.Get("Strict-Transport-Security"))
	}
	selfSigned(t, dir, 2) // a renewal
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, _ := serial(); s == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was never served")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
