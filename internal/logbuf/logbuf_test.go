package logbuf_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/plugind/plugind/internal/logbuf"
)

// sink records what reaches the underlying writer.
type sink struct {
	mu     sync.Mutex
	data   strings.Builder
	writes int
}

func (s *sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.data.Write(p)
}

func (s *sink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data.String()
}

func TestBatchingAndFlushes(t *testing.T) {
	out := &sink{}
	w := logbuf.New(out, 64<<10, time.Hour)
	log := zerolog.New(w)
	for range 100 {
		log.Info().Msg("request")
	}
	if out.String() != "" {
		t.Fatal("info events were written before a flush")
	}
	log.Warn().Msg("problem")
	got := out.String()
	if strings.Count(got, "request") != 100 || !strings.HasSuffix(got, `{"level":"warn","message":"problem"}`+"\n") {
		t.Fatalf("a warning did not flush everything before it in order: %q", got)
	}
	if out.writes != 1 {
		t.Errorf("101 events took %d writes, want 1", out.writes)
	}
	log.Info().Msg("last")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), `"message":"last"}`+"\n") {
		t.Error("Close did not flush")
	}
}

func TestPeriodicFlush(t *testing.T) {
	out := &sink{}
	w := logbuf.New(out, 64<<10, 10*time.Millisecond)
	defer w.Close()
	log := zerolog.New(w)
	log.Info().Msg("soon")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "soon") {
		if time.Now().After(deadline) {
			t.Fatal("an info event was never flushed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestConcurrentWritesStayWhole(t *testing.T) {
	out := &sink{}
	w := logbuf.New(out, 1024, time.Millisecond)
	log := zerolog.New(w)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				log.Info().Int("g", i).Msg(strings.Repeat("x", 40))
			}
		})
	}
	wg.Wait()
	w.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 1600 {
		t.Fatalf("%d lines, want 1600", len(lines))
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, `{"level":"info","g":`) || !strings.HasSuffix(l, `"}`) {
			t.Fatalf("torn line %q", l)
		}
	}
}
