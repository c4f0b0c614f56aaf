package rungroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultShutdownGrace is how long an HTTPServer whose context ends lets the
// requests in flight finish before it cuts them.
const DefaultShutdownGrace = 10 * time.Second

// HTTPServer is an http.Server as a component: Run serves Listener until ctx ends.
//
// A process that stops gracefully shuts Server down itself first, within its own
// deadline (Serve then returns and Run returns nil), and only then stops the group.
// When the group's context ends without that (another component failed), Run shuts
// the server down itself, giving the requests in flight ShutdownGrace.
type HTTPServer struct {
	Server   *http.Server
	Listener net.Listener
	// ShutdownGrace bounds Run's own shutdown; zero means DefaultShutdownGrace.
	ShutdownGrace time.Duration
}

// Run serves until ctx ends or the server is shut down, and returns nil then; it
// returns an error if serving fails.
func (h HTTPServer) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() { served <- h.Server.Serve(h.Listener) }()
	select {
	case err := <-served:
		return serveErr(err)
	case <-ctx.Done():
	}
	grace := h.ShutdownGrace
	if grace <= 0 {
		grace = DefaultShutdownGrace
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	var errs []error
	if err := h.Server.Shutdown(sctx); err != nil {
		errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		_ = h.Server.Close()
	}
	errs = append(errs, serveErr(<-served))
	return errors.Join(errs...)
}

// serveErr is Serve's error, nil when the server was shut down or closed.
func serveErr(err error) error {
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("http server: %w", err)
}

// Share returns the context of one step of a stop: it ends when ctx does, or once
// 1/parts of the time ctx has left has passed, so that the steps after it keep the
// rest. An HTTP server's drain, which open streams can make last as long as they are
// allowed, takes half, and the components that give back what they hold have the
// other half. Without a deadline in ctx it ends with ctx.
func Share(ctx context.Context, parts int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || parts <= 1 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Until(deadline)/time.Duration(parts))
}

// Drain shuts srv down for a stop bounded by ctx: it lets the requests in flight
// finish for half the time ctx has left (see Share), then cuts what is still open
// (long streams, connections that never sent a request), which is what a bounded
// stop means and is logged, not returned. It returns an error only when ctx itself
// has ended or the server fails to close.
func Drain(ctx context.Context, srv *http.Server, log *slog.Logger) error {
	drain, cancel := Share(ctx, 2) // the components keep the other half
	defer cancel()
	err := srv.Shutdown(drain)
	if err == nil {
		return nil
	}
	if cerr := srv.Close(); cerr != nil {
		return fmt.Errorf("close http server: %w", cerr)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("shut down http server: %w", err)
	}
	if log != nil {
		log.Warn("http server: requests still open after the drain were cut", "err", err)
	}
	return nil
}

// CloseWithin runs closeAll in the background, closes closed once it has returned,
// and waits for that while ctx allows: the last step of a bounded stop, once the
// components are done with what closeAll closes (or the stop ran out of time
// waiting for them). A stop already out of time starts closing and returns nil at
// once, since it has reported its deadline already; otherwise the error is ctx's
// when closeAll outlasts it.
func CloseWithin(ctx context.Context, closed chan struct{}, closeAll func()) error {
	late := ctx.Err() != nil
	go func() {
		defer close(closed)
		closeAll()
	}()
	if late {
		return nil
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
