package loader

import "testing"

func TestPanicSite(t *testing.T) {
	tests := []struct{ name, stack, want string }{
		{"plugin frame", "goroutine 54 [running]:\nruntime/debug.Stack()\n\t/usr/local/go/src/runtime/debug/stack.go:26 +0x68\ngithub.com/plugind/plugind/loader.(*Handler).callLocked.func1()\n\t/work/main/loader/abi.go:280 +0x129\npanic({0x18d0ec0?, 0x7f4eddbdbe40?})\n\t/usr/local/go/src/runtime/panic.go:860 +0x14a\nplugin/unnamed-26ae.GETBoomHandler()\n\t/tmp/x/001/src/panics.go:8 +0x2b\n", "panics.go:8"},
		{"inlined frame", "panic({0x1, 0x2})\n\t/usr/local/go/src/runtime/panic.go:860 +0x13a\nmain.boom(...)\n\t/tmp/st/main.go:8\n", "main.go:8"},
		{"no panic frame", "goroutine 1 [running]:\nmain.main()\n\t/tmp/main.go:3 +0x1\n", ""},
		{"cut short", "panic({0x1})\n\t/usr/local/go/src/runtime/panic.go:860\n", ""},
	}
	for _, tt := range tests {
		if got := panicSite([]byte(tt.stack)); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
