// grumpy's listener panics: the publisher must carry on.
package main

import (
	"context"

	"github.com/plugind/plugind/sdk"
)

func Init(ctx context.Context) error {
	return sdk.Subscribe(ctx, "order.placed", func(context.Context, struct{}) error {
		panic("grumpy listener")
	})
}

func GETHelloHandler() string { return "grumpy" }
