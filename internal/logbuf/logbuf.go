// Package logbuf batches log output: one write system call per buffer
// or interval instead of one per event. Under load the access log's
// write(2) per request costs several percent of throughput.
//
// Events at warn level and above are flushed at once, together with
// everything before them, so problems reach the log without delay; info
// and debug events reach it within the flush interval. Close flushes the
// rest. What is still buffered when the process is killed, or ended by a
// plugin's os.Exit, is lost: that is the price of the batching.
package logbuf

import (
	"bufio"
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Writer is a buffered, periodically flushed zerolog.LevelWriter. It is
// safe for concurrent use.
type Writer struct {
	mu  sync.Mutex // guards buf
	buf *bufio.Writer

	stop chan struct{}
	done chan struct{}
}

var _ zerolog.LevelWriter = (*Writer)(nil)

// New buffers up to size bytes for w and flushes at least every interval.
func New(w io.Writer, size int, interval time.Duration) *Writer {
	bw := &Writer{buf: bufio.NewWriterSize(w, size), stop: make(chan struct{}), done: make(chan struct{})}
	go bw.flushEvery(interval)
	return bw
}

func (w *Writer) flushEvery(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.Flush()
		case <-w.stop:
			return
		}
	}
}

// Write buffers p.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

// WriteLevel buffers p, and flushes at once for warnings and errors.
func (w *Writer) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if err == nil && level >= zerolog.WarnLevel && level != zerolog.NoLevel {
		err = w.buf.Flush()
	}
	return n, err
}

// Flush writes what is buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Flush()
}

// Close stops the periodic flush and flushes what is left.
func (w *Writer) Close() error {
	close(w.stop)
	<-w.done
	return w.Flush()
}
