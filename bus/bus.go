// Package bus is plugind's in-process message bus, after Grafana's:
// events are facts in the past tense that any number of listeners react
// to; commands are imperative requests with exactly one handler, which
// may fail; queries are commands whose handler returns a result.
// Delivery is synchronous and every call carries a context.
//
// # Payloads
//
// Plugins are built separately and share no Go types beyond the standard
// library and package sdk, so payloads cross the bus as JSON: the bus
// moves bytes, and the sdk's generic helpers encode and decode them into
// each side's own types. A listener therefore gets a copy it may keep
// or change.
//
// # Owners and reloads
//
// Registrations belong to an owner: the server itself, or one version of
// one plugin. Registrations an owner makes are staged until Commit makes
// them live, atomically with removing the registrations of the owner it
// replaces: a message published at any moment of a plugin's reload is
// delivered to exactly one of its versions, never both, never neither
// (as long as both versions subscribe to it). Drop discards an owner's
// registrations, staged or live.
//
// # Start-up events
//
// Events published before any plugin could subscribe (the server's own
// start-up events: which plugins were found, the server starting) would
// reach nobody. Between Retain and StopRetaining the bus keeps the events
// it publishes (up to a limit), and replays them, in order, to every
// listener registered later, before it receives anything newer: each
// listener sees each kept event once, whenever it subscribed. A replay
// runs on the goroutine that makes the listener live (Subscribe, or
// Commit for a staged owner); its errors go to the observer only.
//
// A listener or handler that panics is contained: the panic is returned
// as an error to the publisher or dispatcher, who carries on.
package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"

	"github.com/plugind/plugind/sdk"
)

// Errors of Dispatch and Handle.
var (
	// ErrHandlerNotFound: a command or query has no handler. Plugins see
	// it as sdk.ErrHandlerNotFound: it is the same error.
	ErrHandlerNotFound = sdk.ErrHandlerNotFound
	// ErrDuplicateHandler: a command or query has a handler already.
	ErrDuplicateHandler = sdk.ErrDuplicateHandler
	// ErrPanic: a listener or handler panicked.
	ErrPanic = errors.New("bus: listener or handler panicked")
	// ErrClosed: the owner was dropped, or committed over, already.
	ErrClosed = errors.New("bus: the owner is no longer registered")
)

// Listener reacts to an event.
type Listener func(ctx context.Context, payload []byte) error

// Handler handles a command (returning nil) or a query (returning its
// result).
type Handler func(ctx context.Context, payload []byte) ([]byte, error)

// Kind is what a message is.
type Kind string

const (
	KindEvent   Kind = "event"
	KindCommand Kind = "command"
)

// Message is a message as observers see it.
type Message struct {
	Kind    Kind
	Name    string
	Payload []byte
	// Delivered is the number of listeners (events) or 1 (a handled
	// command); Err is what the publisher or dispatcher got back.
	Delivered int
	Err       error
	// Replayed marks a kept start-up event replayed to one new listener.
	Replayed bool
}

type listener struct {
	owner string
	fn    Listener
}

type handler struct {
	owner string
	fn    Handler
}

// Bus is the message bus. The zero value is not usable: use New.
type Bus struct {
	// Observe, if set, sees every message after delivery (metrics, the
	// event stream). It must not block.
	observe func(Message)

	mu        sync.RWMutex // guards the maps below
	listeners map[string][]listener
	handlers  map[string]handler
	staged    map[string]*staging // by owner: registrations not yet live
	live      map[string]bool     // owners with live registrations
	retired   map[string]bool     // owners committed over or dropped: refused
	retaining bool                // Publish appends to kept
	keep      int                 // the most events kept
	kept      []kept              // append-only: replayed to new listeners
}

// kept is a start-up event kept for listeners that come later.
type kept struct {
	name    string
	payload []byte
}

type staging struct {
	listeners map[string][]Listener
	handlers  map[string]Handler
}

// New returns an empty bus; observe may be nil.
func New(observe func(Message)) *Bus {
	return &Bus{
		observe:   observe,
		listeners: make(map[string][]listener),
		handlers:  make(map[string]handler),
		staged:    make(map[string]*staging),
		live:      make(map[string]bool),
		retired:   make(map[string]bool),
	}
}

// Publish delivers an event to every live listener, in registration
// order, and returns their errors joined (a panic becomes ErrPanic). An
// event nobody listens to is not an error.
func (b *Bus) Publish(ctx context.Context, name string, payload []byte) error {
	b.mu.RLock()
	ls := b.listeners[name] // replaced, never appended to in place
	retaining := b.retaining
	b.mu.RUnlock()
	if retaining {
		// Keeping the event and reading its listeners is one step: a
		// listener going live now gets it either replayed or live, once.
		b.mu.Lock()
		if b.retaining && len(b.kept) < b.keep {
			b.kept = append(b.kept, kept{name, slices.Clone(payload)})
		}
		ls = b.listeners[name]
		b.mu.Unlock()
	}
	var errs []error
	for _, l := range ls {
		if err := contain(func() error { return l.fn(ctx, payload) }); err != nil {
			errs = append(errs, fmt.Errorf("event %s, listener of %s: %w", name, l.owner, err))
		}
	}
	err := errors.Join(errs...)
	b.seen(Message{Kind: KindEvent, Name: name, Payload: payload, Delivered: len(ls), Err: err})
	return err
}

// Dispatch hands a command or query to its handler and returns its result.
func (b *Bus) Dispatch(ctx context.Context, name string, payload []byte) ([]byte, error) {
	b.mu.RLock()
	h, ok := b.handlers[name]
	b.mu.RUnlock()
	if !ok {
		err := fmt.Errorf("%w: %s", ErrHandlerNotFound, name)
		b.seen(Message{Kind: KindCommand, Name: name, Payload: payload, Err: err})
		return nil, err
	}
	var result []byte
	err := contain(func() (err error) {
		result, err = h.fn(ctx, payload)
		return err
	})
	if err != nil {
		err = fmt.Errorf("command %s, handler of %s: %w", name, h.owner, err)
	}
	b.seen(Message{Kind: KindCommand, Name: name, Payload: payload, Delivered: 1, Err: err})
	return result, err
}

func (b *Bus) seen(m Message) {
	if b.observe != nil {
		b.observe(m)
	}
}

// contain runs f, turning a panic into ErrPanic.
func contain(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%w: %v\n%s", ErrPanic, v, debug.Stack())
		}
	}()
	return f()
}

// Subscribe registers a listener for owner: live at once for the server's
// own owner names, staged until Commit otherwise (see Stage).
func (b *Bus) Subscribe(owner, name string, fn Listener) error {
	for replayed := 0; ; {
		b.mu.Lock()
		if b.retired[owner] {
			b.mu.Unlock()
			return fmt.Errorf("%w: %s", ErrClosed, owner)
		}
		if s, ok := b.staged[owner]; ok {
			s.listeners[name] = append(s.listeners[name], fn)
			b.mu.Unlock()
			return nil
		}
		if replayed == len(b.kept) {
			b.listeners[name] = append(slices.Clip(b.listeners[name]), listener{owner, fn})
			b.live[owner] = true
			b.mu.Unlock()
			return nil
		}
		pending := b.kept[replayed:]
		replayed = len(b.kept)
		b.mu.Unlock()
		b.replay(owner, pending, map[string][]Listener{name: {fn}})
	}
}

// Retain keeps the events published from now on, up to limit, for
// listeners registered later (see Start-up events).
func (b *Bus) Retain(limit int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.retaining, b.keep = true, limit
}

// StopRetaining keeps no more events; those kept are still replayed to
// every later listener.
func (b *Bus) StopRetaining() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.retaining = false
}

// replay delivers kept events to owner's listeners, in order, outside
// the lock.
func (b *Bus) replay(owner string, events []kept, listeners map[string][]Listener) {
	for _, e := range events {
		for _, fn := range listeners[e.name] {
			err := contain(func() error { return fn(context.Background(), slices.Clone(e.payload)) })
			if err != nil {
				err = fmt.Errorf("event %s (replayed), listener of %s: %w", e.name, owner, err)
			}
			b.seen(Message{Kind: KindEvent, Name: e.name, Payload: e.payload, Delivered: 1, Err: err, Replayed: true})
		}
	}
}

// Handle registers owner's handler of a command or query. A second
// handler for a name is refused with ErrDuplicateHandler, unless it
// belongs to the owner a staged owner will replace.
func (b *Bus) Handle(owner, name string, fn Handler) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.retired[owner] {
		return fmt.Errorf("%w: %s", ErrClosed, owner)
	}
	if s, ok := b.staged[owner]; ok {
		if _, dup := s.handlers[name]; dup {
			return fmt.Errorf("%w: %s", ErrDuplicateHandler, name)
		}
		s.handlers[name] = fn
		return nil
	}
	if h, dup := b.handlers[name]; dup {
		return fmt.Errorf("%w: %s (by %s)", ErrDuplicateHandler, name, h.owner)
	}
	b.handlers[name] = handler{owner, fn}
	b.live[owner] = true
	return nil
}

// Stage makes owner's future registrations wait for Commit.
func (b *Bus) Stage(owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.retired, owner) // a version made current again
	b.staged[owner] = &staging{listeners: make(map[string][]Listener), handlers: make(map[string]Handler)}
}

// Commit makes owner's staged registrations live and removes those of
// replaced ("" for none), in one step. A staged handler whose name another
// owner (not replaced) handles already fails the commit with
// ErrDuplicateHandler; nothing changes then.
func (b *Bus) Commit(owner, replaced string) error {
	for replayed := 0; ; {
		b.mu.Lock()
		s, ok := b.staged[owner]
		if !ok {
			b.mu.Unlock()
			return fmt.Errorf("%w: %s was not staged", ErrClosed, owner)
		}
		if err := b.checkCommitLocked(s, owner, replaced); err != nil {
			b.mu.Unlock()
			return err
		}
		if replayed == len(b.kept) {
			b.commitLocked(s, owner, replaced)
			b.mu.Unlock()
			return nil
		}
		// Kept events first, while the version it replaces still gets
		// the live ones: then it goes live with nothing missed.
		pending := b.kept[replayed:]
		replayed = len(b.kept)
		listeners := make(map[string][]Listener, len(s.listeners))
		for name, fns := range s.listeners {
			listeners[name] = slices.Clone(fns)
		}
		b.mu.Unlock()
		b.replay(owner, pending, listeners)
	}
}

func (b *Bus) checkCommitLocked(s *staging, owner, replaced string) error {
	for name := range s.handlers {
		if h, dup := b.handlers[name]; dup && h.owner != replaced && h.owner != owner {
			return fmt.Errorf("%w: %s (by %s)", ErrDuplicateHandler, name, h.owner)
		}
	}
	return nil
}

func (b *Bus) commitLocked(s *staging, owner, replaced string) {
	if replaced != "" {
		b.removeLocked(replaced)
		b.retired[replaced] = true
	}
	b.removeLocked(owner) // a re-activated version starts afresh
	for name, fns := range s.listeners {
		ls := slices.Clip(b.listeners[name])
		for _, fn := range fns {
			ls = append(ls, listener{owner, fn})
		}
		b.listeners[name] = ls
	}
	for name, fn := range s.handlers {
		b.handlers[name] = handler{owner, fn}
	}
	delete(b.staged, owner)
	b.live[owner] = true
}

// Drop removes owner's registrations, staged and live, and refuses its
// later ones (a goroutine a dropped version left running) with ErrClosed.
func (b *Bus) Drop(owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.staged, owner)
	b.removeLocked(owner)
	b.retired[owner] = true
}

func (b *Bus) removeLocked(owner string) {
	if !b.live[owner] {
		return
	}
	for name, ls := range b.listeners {
		kept := slices.DeleteFunc(slices.Clone(ls), func(l listener) bool { return l.owner == owner })
		if len(kept) == 0 {
			delete(b.listeners, name)
		} else {
			b.listeners[name] = kept
		}
	}
	for name, h := range b.handlers {
		if h.owner == owner {
			delete(b.handlers, name)
		}
	}
	delete(b.live, owner)
}

// Client is the bus as one owner sees it, for sdk.Env: its registrations
// are owner's. A client for requests (staged false) refuses them: they
// belong in a plugin's Init, where a reload can take them back.
func (b *Bus) Client(owner string, registrations bool) sdk.Bus {
	return &client{b: b, owner: owner, registrations: registrations}
}

type client struct {
	b             *Bus
	owner         string
	registrations bool
}

var _ sdk.Bus = (*client)(nil)

func (c *client) Publish(ctx context.Context, name string, payload []byte) error {
	return c.b.Publish(ctx, name, payload)
}

func (c *client) Dispatch(ctx context.Context, name string, payload []byte) ([]byte, error) {
	return c.b.Dispatch(ctx, name, payload)
}

func (c *client) Subscribe(name string, fn func(ctx context.Context, payload []byte) error) error {
	if !c.registrations {
		return sdk.ErrRegisterInInit
	}
	return c.b.Subscribe(c.owner, name, fn)
}

func (c *client) Handle(name string, fn func(ctx context.Context, payload []byte) ([]byte, error)) error {
	if !c.registrations {
		return sdk.ErrRegisterInInit
	}
	return c.b.Handle(c.owner, name, fn)
}
