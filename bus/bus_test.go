package bus_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plugind/plugind/bus"
	"github.com/plugind/plugind/internal/plugintest"
	"github.com/plugind/plugind/sdk"
)

func TestEventsCommandsQueries(t *testing.T) {
	var seen []bus.Message
	var mu sync.Mutex
	b := bus.New(func(m bus.Message) { mu.Lock(); seen = append(seen, m); mu.Unlock() })
	ctx := context.Background()

	var got []string
	for _, who := range []string{"a", "b"} {
		b.Subscribe("server", "user.created", func(_ context.Context, p []byte) error {
			got = append(got, who+":"+string(p))
			return nil
		})
	}
	if err := b.Publish(ctx, "user.created", []byte(`"ada"`)); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != `a:"ada",b:"ada"` {
		t.Errorf("listeners got %q", got)
	}
	if err := b.Publish(ctx, "nobody.listens", nil); err != nil {
		t.Errorf("an event without listeners: %v", err)
	}

	if err := b.Handle("server", "user.rename", func(_ context.Context, p []byte) ([]byte, error) {
		if string(p) == `""` {
			return nil, errors.New("empty name")
		}
		return []byte(`{"ok":true}`), nil
	}); err != nil {
		t.Fatal(err)
	}
	if res, err := b.Dispatch(ctx, "user.rename", []byte(`"bob"`)); err != nil || string(res) != `{"ok":true}` {
		t.Errorf("query: %s %v", res, err)
	}
	if _, err := b.Dispatch(ctx, "user.rename", []byte(`""`)); err == nil || !strings.Contains(err.Error(), "empty name") {
		t.Errorf("a failing command: %v", err)
	}
	if _, err := b.Dispatch(ctx, "user.delete", nil); !errors.Is(err, bus.ErrHandlerNotFound) || !errors.Is(err, sdk.ErrHandlerNotFound) {
		t.Errorf("a command without a handler: %v", err)
	}
	if err := b.Handle("other", "user.rename", nil); !errors.Is(err, bus.ErrDuplicateHandler) {
		t.Errorf("a second handler: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 5 || seen[0].Delivered != 2 || seen[0].Kind != bus.KindEvent || seen[4].Err == nil {
		t.Errorf("observed %+v", seen)
	}
}

func TestPanicsAreContained(t *testing.T) {
	b := bus.New(nil)
	ctx := context.Background()
	var after bool
	b.Subscribe("x", "e", func(context.Context, []byte) error { panic("listener exploded") })
	b.Subscribe("y", "e", func(context.Context, []byte) error { after = true; return nil })
	err := b.Publish(ctx, "e", nil)
	if !errors.Is(err, bus.ErrPanic) || !strings.Contains(err.Error(), "listener exploded") || !after {
		t.Errorf("publish with a panicking listener: %v (later listener ran: %v)", err, after)
	}
	b.Handle("x", "c", func(context.Context, []byte) ([]byte, error) { panic("handler exploded") })
	if _, err := b.Dispatch(ctx, "c", nil); !errors.Is(err, bus.ErrPanic) {
		t.Errorf("dispatch to a panicking handler: %v", err)
	}
}

func TestStagedRegistrations(t *testing.T) {
	b := bus.New(nil)
	ctx := context.Background()
	var v1, v2 atomic.Int64
	b.Stage("p@1")
	c1 := b.Client("p@1", true)
	c1.Subscribe("e", func(context.Context, []byte) error { v1.Add(1); return nil })
	c1.Handle("q", func(context.Context, []byte) ([]byte, error) { return []byte("1"), nil })
	b.Publish(ctx, "e", nil)
	if v1.Load() != 0 {
		t.Error("a staged listener got an event")
	}
	if err := b.Commit("p@1", ""); err != nil {
		t.Fatal(err)
	}
	b.Publish(ctx, "e", nil)

	// Version 2 replaces version 1, handler name included.
	b.Stage("p@2")
	c2 := b.Client("p@2", true)
	c2.Subscribe("e", func(context.Context, []byte) error { v2.Add(1); return nil })
	if err := c2.Handle("q", func(context.Context, []byte) ([]byte, error) { return []byte("2"), nil }); err != nil {
		t.Fatalf("the new version's handler: %v", err)
	}
	if err := b.Commit("p@2", "p@1"); err != nil {
		t.Fatal(err)
	}
	b.Publish(ctx, "e", nil)
	if v1.Load() != 1 || v2.Load() != 1 {
		t.Errorf("deliveries v1=%d v2=%d, want 1 and 1", v1.Load(), v2.Load())
	}
	if res, _ := b.Dispatch(ctx, "q", nil); string(res) != "2" {
		t.Errorf("query answered by %s, want version 2", res)
	}

	// A staged handler that another owner has: the commit fails, nothing changes.
	b.Handle("server", "taken", func(context.Context, []byte) ([]byte, error) { return nil, nil })
	b.Stage("z@1")
	b.Client("z@1", true).Handle("taken", func(context.Context, []byte) ([]byte, error) { return nil, nil })
	if err := b.Commit("z@1", ""); !errors.Is(err, bus.ErrDuplicateHandler) {
		t.Errorf("commit over another owner's handler: %v", err)
	}
	b.Drop("p@2")
	if _, err := b.Dispatch(ctx, "q", nil); !errors.Is(err, bus.ErrHandlerNotFound) {
		t.Errorf("after Drop: %v", err)
	}
	// A replaced or dropped version cannot register again (a goroutine it
	// left running): its listener would hear events meant for its successor.
	for _, retired := range []string{"p@1", "p@2"} {
		if err := b.Subscribe(retired, "e", func(context.Context, []byte) error { return nil }); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("%s registered after it was retired: %v", retired, err)
		}
	}
	if err := b.Client("p@3", false).Subscribe("e", nil); !errors.Is(err, sdk.ErrRegisterInInit) {
		t.Errorf("a request client registered: %v", err)
	}
}

// TestSwapUnderLoad publishes without pause while version after version
// replaces the last: every event reaches exactly one version.
func TestSwapUnderLoad(t *testing.T) {
	b := bus.New(nil)
	ctx := context.Background()
	const versions = 50
	var delivered atomic.Int64
	owner := func(v int) string { return fmt.Sprintf("p@%d", v) }
	register := func(v int) {
		b.Stage(owner(v))
		b.Client(owner(v), true).Subscribe("tick", func(context.Context, []byte) error { delivered.Add(1); return nil })
	}
	register(0)
	b.Commit(owner(0), "")

	var published atomic.Int64
	stop := plugintest.Busy(4, func() {
		if err := b.Publish(ctx, "tick", nil); err != nil {
			t.Error(err)
		}
		published.Add(1)
	})
	for v := 1; v <= versions; v++ {
		for seen := published.Load(); published.Load() < seen+50; {
			runtime.Gosched() // let events flow between swaps
		}
		register(v)
		if err := b.Commit(owner(v), owner(v-1)); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if published.Load() < versions*50 || delivered.Load() != published.Load() {
		t.Errorf("%d events published across %d swaps, %d deliveries: want exactly one each", published.Load(), versions, delivered.Load())
	}
	t.Logf("%d events, %d swaps", published.Load(), versions)
}

func BenchmarkPublish(b *testing.B) {
	for _, subscribers := range []int{1, 10} {
		b.Run(fmt.Sprintf("subscribers=%d", subscribers), func(b *testing.B) {
			bs := bus.New(nil)
			var n atomic.Int64
			for range subscribers {
				bs.Subscribe("server", "e", func(context.Context, []byte) error { n.Add(1); return nil })
			}
			ctx := context.Background()
			payload := []byte(`{"plugin":"hello","duration_ms":12}`)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					bs.Publish(ctx, "e", payload)
				}
			})
			b.ReportMetric(float64(n.Load())/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

func BenchmarkSDKRoundTrip(b *testing.B) {
	bs := bus.New(nil)
	bs.Stage("p@1")
	ctx := sdk.NewContext(context.Background(), &sdk.Env{Bus: bs.Client("p@1", true)})
	type event struct {
		Plugin string `json:"plugin"`
		N      int    `json:"n"`
	}
	sdk.Subscribe(ctx, "e", func(context.Context, event) error { return nil })
	bs.Commit("p@1", "")
	b.ReportAllocs()
	for b.Loop() {
		sdk.Publish(ctx, "e", event{"hello", 1})
	}
}

func TestTapDropsSlowStreams(t *testing.T) {
	var tap bus.Tap
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	slow, fast := tap.Stream(ctx, 2), tap.Stream(ctx, 8)
	for i := range 3 {
		tap.Observe(bus.Message{Name: fmt.Sprint(i)})
	}
	var got []string
	for m := range slow {
		got = append(got, m.Name)
	}
	if !slices.Equal(got, []string{"0", "1"}) || ctx.Err() != nil {
		t.Errorf("a reader 2 behind got %v, then its stream should close", got)
	}
	if n := len(fast); n != 3 || tap.Streams() != 1 {
		t.Errorf("the other stream holds %d messages (want 3); %d streams open (want 1)", n, tap.Streams())
	}
	cancel()
	for range fast {
	}
	if tap.Streams() != 0 {
		t.Errorf("%d streams open after their context ended", tap.Streams())
	}
}

func TestStartUpEventsAreReplayed(t *testing.T) {
	b := bus.New(nil)
	b.Retain(10)
	ctx := context.Background()
	for _, e := range []string{"a1", "b1", "a2"} {
		if err := b.Publish(ctx, e[:1], []byte(`"`+e+`"`)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	record := func(_ context.Context, p []byte) error { got = append(got, string(p)); return nil }
	if err := b.Subscribe("server", "a", record); err != nil {
		t.Fatal(err)
	}
	if want := []string{`"a1"`, `"a2"`}; !slices.Equal(got, want) {
		t.Errorf("a live subscriber got %v, want %v replayed", got, want)
	}
	got = nil
	b.Stage("p@1")
	if err := b.Subscribe("p@1", "b", record); err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("a staged listener got %v before its commit", got)
	}
	if err := b.Commit("p@1", ""); err != nil {
		t.Fatal(err)
	}
	if want := []string{`"b1"`}; !slices.Equal(got, want) {
		t.Errorf("a committed plugin got %v, want %v replayed", got, want)
	}
	b.StopRetaining()
	got = nil
	if err := b.Publish(ctx, "b", []byte(`"b2"`)); err != nil {
		t.Fatal(err)
	}
	if want := []string{`"b2"`}; !slices.Equal(got, want) {
		t.Errorf("after start-up, live: got %v, want %v", got, want)
	}
	got = nil
	if err := b.Subscribe("late", "b", record); err != nil {
		t.Fatal(err)
	}
	if want := []string{`"b1"`}; !slices.Equal(got, want) {
		t.Errorf("a later subscriber got %v, want only the start-up events %v", got, want)
	}
}

// TestReplayWhilePublishing subscribes while events are being published
// and kept: every event reaches the new listener exactly once, in order,
// replayed or live.
func TestReplayWhilePublishing(t *testing.T) {
	const n = 2000
	for _, staged := range []bool{false, true} {
		b := bus.New(nil)
		b.Retain(n)
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range n {
				if err := b.Publish(context.Background(), "tick", fmt.Append(nil, i)); err != nil {
					t.Error(err)
				}
			}
		})
		var got []int
		record := func(_ context.Context, p []byte) error {
			var i int
			fmt.Sscan(string(p), &i)
			got = append(got, i)
			return nil
		}
		if staged {
			b.Stage("p@1")
			if err := b.Subscribe("p@1", "tick", record); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit("p@1", ""); err != nil {
				t.Fatal(err)
			}
		} else if err := b.Subscribe("server", "tick", record); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if len(got) != n || !slices.IsSorted(got) || got[0] != 0 || got[n-1] != n-1 {
			t.Errorf("staged %v: %d events, sorted %v; want each of %d once, in order", staged, len(got), slices.IsSorted(got), n)
		}
	}
}
