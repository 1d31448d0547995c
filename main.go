// Command plugind serves Go source files as HTTP endpoints: see README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/plugind/plugind/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Environ(), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
