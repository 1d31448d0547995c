package isolate_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plugind/plugind/internal/benchproc"
	"github.com/plugind/plugind/internal/plugintest"
)

// TestCgoFreeServer: a plugind built with CGO_ENABLED=0 cannot open .so
// plugins at all; with isolation = "auto" it serves them in processes.
func TestCgoFreeServer(t *testing.T) {
	// Linked when it changed only (plugintest.KeptBuild); run, never written.
	bin := plugintest.KeptBuild(t, plugintest.Root(), "plugind", []string{"CGO_ENABLED=0", "GOFLAGS="}, "-buildvcs=auto", ".")
	dir := plugintest.PluginPath(t, "hello")
	if err := benchproc.PluginDir(dir, nil); err != nil {
		t.Fatal(err)
	}
	ports, err := benchproc.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "plugind.log")
	srv, err := benchproc.Start(bin, dir, ports[0], logPath,
		"PREST_PLUGINS_ISOLATION=auto", "PREST_PLUGINS_CACHEDIR="+plugintest.CacheDir(), "PREST_PLUGINS_CACHEMAXMB="+strconv.Itoa(plugintest.CacheMaxMB), "PREST_PLUGINS_WARMUP=false",
		"PREST_PLUGINS_BUILDWAIT="+plugintest.BuildWait.String(), "PREST_HTTP_WRITETIMEOUT="+plugintest.WriteTimeout.String(), "PREST_TASKS_DIR="+t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var body string
	err = srv.Poll(context.Background(), 2*time.Minute, 50*time.Millisecond, func(ctx context.Context) (bool, error) {
		resp, b, err := benchproc.Get(ctx, http.DefaultClient, srv.URL("/_PLUGIN/hello/Hello?a=1"), "")
		if err != nil {
			return false, err
		}
		if resp.StatusCode != http.StatusOK {
			return false, &statusError{resp.StatusCode, string(b)}
		}
		body = string(b)
		return true, nil
	})
	if stopErr := srv.Stop(); stopErr != nil {
		t.Error(stopErr)
	}
	if err != nil {
		log, _ := os.ReadFile(logPath)
		t.Fatalf("%v\nlog:\n%s", err, log)
	}
	if !strings.Contains(body, `"url_query":{"a":["1"]}`) {
		t.Fatalf("hello from a cgo-free server: %s", body)
	}
}

type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return http.StatusText(e.status) + ": " + e.body }
