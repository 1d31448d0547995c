package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// certStore serves the TLS certificate and reloads it on SIGHUP or when
// its files change, so a renewed certificate needs no restart. A reload
// that fails keeps the previous certificate.
type certStore struct {
	certFile, keyFile string
	log               zerolog.Logger

	mu   sync.RWMutex // guards cert
	cert *tls.Certificate
}

func newCertStore(certFile, keyFile string, log zerolog.Logger) (*certStore, error) {
	c := &certStore{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certStore) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("https.cert/https.key: %w", err)
	}
	c.mu.Lock()
	c.cert = &cert
	c.mu.Unlock()
	return nil
}

func (c *certStore) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cert, nil
}

func (c *certStore) reload(why string) {
	if err := c.load(); err != nil {
		c.log.Error().Err(err).Str("trigger", why).Msg("TLS certificate reload failed; keeping the previous one")
		return
	}
	c.log.Info().Str("trigger", why).Msg("TLS certificate reloaded")
}

// watch reloads on SIGHUP and on changes to the files (their directories
// are watched: renewals usually replace files by renaming).
func (c *certStore) watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w, err := fsnotify.NewWatcher(); err != nil {
		c.log.Warn().Err(err).Msg("TLS certificate files are not watched; reload with SIGHUP")
	} else {
		defer w.Close()
		for _, dir := range []string{filepath.Dir(c.certFile), filepath.Dir(c.keyFile)} {
			if err := w.Add(dir); err != nil {
				c.log.Warn().Err(err).Str("dir", dir).Msg("TLS certificate directory not watched; reload with SIGHUP")
			}
		}
		events, errs = w.Events, w.Errors
	}
	c.run(ctx, hup, events, errs)
}

// run reloads on hup and on events for the certificate or key file until
// ctx ends. Watcher errors are logged and watching goes on: fsnotify
// delivers events and errors from one goroutine, so an error nobody
// receives would stop every later event.
func (c *certStore) run(ctx context.Context, hup <-chan os.Signal, events <-chan fsnotify.Event, errs <-chan error) {
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			c.reload("SIGHUP")
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			c.log.Warn().Err(err).Msg("watching the TLS certificate files; still watching")
		case ev, ok := <-events:
			if !ok {
				events = nil
				c.log.Warn().Msg("TLS certificate files are no longer watched; reload with SIGHUP")
				continue
			}
			if name := filepath.Clean(ev.Name); name == filepath.Clean(c.certFile) || name == filepath.Clean(c.keyFile) {
				settle = time.After(200 * time.Millisecond) // both files are usually rewritten
			}
		case <-settle:
			c.reload("file change")
		}
	}
}
