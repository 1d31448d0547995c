package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Bus is plugind's message bus as a plugin sees it (see package bus):
// payloads are bytes, JSON by convention; the generic helpers below
// encode and decode them. Registrations made from an Init hook belong to
// that version of the plugin and leave with it on a reload.
type Bus interface {
	Publish(ctx context.Context, name string, payload []byte) error
	Dispatch(ctx context.Context, name string, payload []byte) ([]byte, error)
	Subscribe(name string, fn func(ctx context.Context, payload []byte) error) error
	Handle(name string, fn func(ctx context.Context, payload []byte) ([]byte, error)) error
}

// Errors of the bus, shared by plugind and plugins.
var (
	// ErrNoBus: the context carries no bus (outside plugind).
	ErrNoBus = errors.New("sdk: no bus in this context")
	// ErrHandlerNotFound: a command or query has no handler.
	ErrHandlerNotFound = errors.New("bus: handler not found")
	// ErrDuplicateHandler: a command or query has a handler already.
	ErrDuplicateHandler = errors.New("bus: a handler is registered already")
	// ErrRegisterInInit: registrations belong in an Init hook.
	ErrRegisterInInit = errors.New("sdk: subscribe and handle from Init, not from a request")
)

func busOf(ctx context.Context) (Bus, error) {
	if b := envFrom(ctx).Bus; b != nil {
		return b, nil
	}
	return nil, ErrNoBus
}

// Publish publishes an event (a fact, named in the past tense:
// "invoice.paid"), JSON-encoded, to every listener. Listener errors come
// back joined.
func Publish(ctx context.Context, name string, event any) error {
	b, err := busOf(ctx)
	if err != nil {
		return err
	}
	data, err := json.Marshal(event)
	if err != nil {
		return fmt.Errorf("sdk: encoding event %s: %w", name, err)
	}
	return b.Publish(ctx, name, data)
}

// Subscribe registers fn for events named name, decoded into T.
func Subscribe[T any](ctx context.Context, name string, fn func(context.Context, T) error) error {
	b, err := busOf(ctx)
	if err != nil {
		return err
	}
	return b.Subscribe(name, func(ctx context.Context, payload []byte) error {
		var v T
		if err := json.Unmarshal(payload, &v); err != nil {
			return fmt.Errorf("sdk: decoding event %s: %w", name, err)
		}
		return fn(ctx, v)
	})
}

// Dispatch sends a command (imperative: "invoice.send") to its one
// handler; ErrHandlerNotFound if it has none.
func Dispatch(ctx context.Context, name string, cmd any) error {
	_, err := dispatch(ctx, name, cmd)
	return err
}

// Query dispatches q and decodes the handler's result into R.
func Query[R any](ctx context.Context, name string, q any) (R, error) {
	var r R
	data, err := dispatch(ctx, name, q)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("sdk: decoding the result of %s: %w", name, err)
	}
	return r, nil
}

func dispatch(ctx context.Context, name string, v any) ([]byte, error) {
	b, err := busOf(ctx)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("sdk: encoding %s: %w", name, err)
	}
	return b.Dispatch(ctx, name, data)
}

// HandleCommand registers the handler of command name, decoded into C.
func HandleCommand[C any](ctx context.Context, name string, fn func(context.Context, C) error) error {
	return HandleQuery(ctx, name, func(ctx context.Context, c C) (struct{}, error) { return struct{}{}, fn(ctx, c) })
}

// HandleQuery registers the handler of query name: it decodes Q and
// returns R, which the bus carries back JSON-encoded.
func HandleQuery[Q, R any](ctx context.Context, name string, fn func(context.Context, Q) (R, error)) error {
	b, err := busOf(ctx)
	if err != nil {
		return err
	}
	return b.Handle(name, func(ctx context.Context, payload []byte) ([]byte, error) {
		var q Q
		if err := json.Unmarshal(payload, &q); err != nil {
			return nil, fmt.Errorf("sdk: decoding %s: %w", name, err)
		}
		r, err := fn(ctx, q)
		if err != nil {
			return nil, err
		}
		return json.Marshal(r)
	})
}
