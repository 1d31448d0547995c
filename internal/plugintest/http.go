package plugintest

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// Answer is an HTTP answer, its body read whole.
type Answer struct {
	Status int
	Header http.Header
	Body   string
}

// Do sends req with client (http.DefaultClient if nil) and reads the
// answer whole. A request that fails, or a body that cannot be read,
// ends the test.
func Do(t testing.TB, client *http.Client, req *http.Request) Answer {
	t.Helper()
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return Answer{resp.StatusCode, resp.Header, string(body)}
}

// Request is a request of method for url with body ("" for none), made
// under the test's context. A URL that does not parse ends the test.
func Request(t testing.TB, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// Get is Do of a GET of url with http.DefaultClient.
func Get(t testing.TB, url string) Answer {
	t.Helper()
	return Do(t, nil, Request(t, http.MethodGet, url, ""))
}
