// Package rungroup runs the long-running components of one process under one
// context. Every component has the same shape, a Run(ctx) error that returns once
// ctx ends; a Group starts each in its own goroutine, ends their shared context when
// one of them fails or when the process stops, and waits for them within a deadline.
//
// It is golang.org/x/sync/errgroup's idea with what a server's lifecycle needs
// besides: components have names (for logs, and for the error naming those still
// running when a stop runs out of time), waiting is bounded by a context, and an
// HTTP server is a component too (HTTPServer).
package rungroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
)

// Group runs components under one context. The zero Group is not usable; call New.
// Its methods are safe for concurrent use.
type Group struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	log    *slog.Logger
	wg     sync.WaitGroup

	mu       sync.Mutex
	running  map[string]int // names of the components still running (a name may repeat)
	errs     []error        // failures, in the order they happened
	sealed   bool           // Wait was called or the context ended: Go starts nothing more
	finished chan struct{}  // closed once sealed and every component has returned
}

// errStopped is the cause of the group's context when Stop ends it.
var errStopped = errors.New("stopped")

// New returns a group whose context is derived from parent: it ends when parent
// does, when Stop is called, or when a component fails. log receives failures;
// nil discards them.
func New(parent context.Context, log *slog.Logger) *Group {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancelCause(parent)
	g := &Group{ctx: ctx, cancel: cancel, log: log, running: map[string]int{}, finished: make(chan struct{})}
	context.AfterFunc(ctx, g.seal)
	return g
}

// seal stops Go from starting components, and closes finished once those started
// have returned.
func (g *Group) seal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sealed {
		return
	}
	g.sealed = true
	go func() {
		g.wg.Wait()
		close(g.finished)
	}()
}

// Context is the context every component runs under. Long-lived helpers that are
// not components (a cache refreshing in the background) should use it too, so that
// stopping the group ends them.
func (g *Group) Context() context.Context { return g.ctx }

// Go runs run(ctx) in a goroutine under the group's context; name identifies it in
// logs and errors. A component that returns a non-nil error is a failure: it is
// logged and kept for Err and Wait, and, if the group is still running, it ends the
// group's context so that every other component stops too. A component returning
// nil is simply done. Go does nothing once Wait has been called or the group's
// context has ended.
func (g *Group) Go(name string, run func(ctx context.Context) error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sealed {
		g.log.Error("component not started: the group is stopping", "component", name)
		return
	}
	g.running[name]++
	g.wg.Go(func() {
		err := run(g.ctx)
		g.done(name, err)
	})
}

// done records that the component name returned err.
func (g *Group) done(name string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running[name]--; g.running[name] <= 0 {
		delete(g.running, name)
	}
	if err == nil || (g.ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		return
	}
	err = fmt.Errorf("%s: %w", name, err)
	g.errs = append(g.errs, err)
	if g.ctx.Err() == nil {
		g.log.Error("component failed; stopping the others", "component", name, "err", err)
		g.cancel(err)
		return
	}
	g.log.Error("component failed while stopping", "component", name, "err", err)
}

// Stop ends the group's context, asking every component to return. It does not
// wait; see Wait. It is safe to call more than once.
func (g *Group) Stop() { g.cancel(errStopped) }

// Done is closed when the group's context ends: Stop was called, the parent
// context ended, or a component failed (Err then says which).
func (g *Group) Done() <-chan struct{} { return g.ctx.Done() }

// Err joins the failures of the components so far, nil if none failed.
func (g *Group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return errors.Join(g.errs...)
}

// Running lists the names of the components that have not returned yet, sorted.
func (g *Group) Running() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Sorted(maps.Keys(g.running))
}

// Wait waits for every component to return, or for ctx to end, whichever comes
// first. It does not end the group's context itself: call Stop first to stop the
// components. It returns the components' failures (Err); when ctx ends first, it
// also returns ctx's error, naming the components still running. Once Wait has been
// called, Go starts nothing more.
func (g *Group) Wait(ctx context.Context) error {
	g.seal()
	select {
	case <-g.finished:
		return g.Err()
	default:
	}
	select {
	case <-g.finished:
		return g.Err()
	case <-ctx.Done():
		late := fmt.Errorf("still running: %s: %w", strings.Join(g.Running(), ", "), ctx.Err())
		return errors.Join(g.Err(), late)
	}
}

// Finished is closed once the group's context has ended (or Wait was called) and
// every component has returned; a caller whose Wait ran out of time can wait on it
// for the stragglers.
func (g *Group) Finished() <-chan struct{} { return g.finished }
