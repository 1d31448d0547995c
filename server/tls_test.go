package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/plugintest"
)

// writeCert writes a self-signed certificate with serial n and its key.
func writeCert(t *testing.T, dir string, n int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(n), Subject: pkix.Name{CommonName: "plugind test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"key.pem":  {Type: "EC PRIVATE KEY", Bytes: keyDER},
		"cert.pem": {Type: "CERTIFICATE", Bytes: der},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func (c *certStore) serial(t *testing.T) int64 {
	cert, err := c.get(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Int64()
}

// TestCertificateReloadSurvivesWatcherErrors feeds the certificate
// watcher the way fsnotify does, from one goroutine: an error, then a
// change. The error is logged and the change still reloads.
func TestCertificateReloadSurvivesWatcherErrors(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, 1)
	logs := &plugintest.Log{}
	c, err := newCertStore(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), zerolog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	events, errs := make(chan fsnotify.Event), make(chan error)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { c.run(ctx, nil, events, errs) })

	writeCert(t, dir, 2) // a renewal
	wg.Go(func() {       // fsnotify's reader goroutine
		for _, send := range []func(){
			func() { errs <- errors.New("inotify queue overflow") },
			func() { events <- fsnotify.Event{Name: filepath.Join(dir, "cert.pem"), Op: fsnotify.Write} },
		} {
			done := make(chan struct{})
			go func() { send(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				return
			}
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for c.serial(t) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the renewal was not loaded after a watcher error: %s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(logs.Events(map[string]any{"level": "warn", "error": "inotify queue overflow"})) != 1 {
		t.Errorf("the watcher error was not logged: %s", logs)
	}
}
