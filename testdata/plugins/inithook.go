// inithook's Init blocks until its context ends and then some: the
// loader must stop waiting.
package main

import (
	"context"
	"time"
)

func Init(ctx context.Context) error {
	<-ctx.Done()
	time.Sleep(time.Hour) // ignores its context's end, too
	return nil
}

func GETHelloHandler() string { return "unreachable" }
