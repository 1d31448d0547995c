// tally counts tally.add commands, whoever sends them.
package main

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/plugind/plugind/sdk"
)

var count atomic.Int64

func Init(ctx context.Context) error {
	return sdk.HandleCommand(ctx, "tally.add", func(context.Context, struct{}) error {
		count.Add(1)
		return nil
	})
}

// GETCountHandler answers the count.
func GETCountHandler() string { return fmt.Sprint(count.Load()) }
