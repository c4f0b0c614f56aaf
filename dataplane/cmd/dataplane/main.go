// Command dataplane runs a Portcullis data-plane worker: it authenticates client
// JWTs, enforces the policy published by the control plane over NATS JetStream KV,
// and proxies OpenAI- and Anthropic-compatible requests to the upstreams the
// client's residency allows. Configuration comes from flags or PORTCULLIS_*
// environment variables; run with -h for the list. SIGINT or SIGTERM stops it
// gracefully, within a bounded time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/logging"
)

// defaultGCPercent is the data plane's GOGC unless the environment sets one. A
// request allocates some 20 KiB that are garbage once it is answered, while the live
// heap is a few MiB: at Go's default of 100 the collector runs very often. At 200
// it runs half as often, for a few MiB more heap (see docs/benchmarks.md).
const defaultGCPercent = 200

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dataplane:", err)
		os.Exit(1)
	}
}

// stopTimeout bounds a graceful shutdown: App.Stop returns by then even if a
// component hangs.
const stopTimeout = 15 * time.Second

// run loads the configuration, starts the data plane and serves until ctx is done or
// one of its components fails, then stops it within stopTimeout.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := app.LoadConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := logging.NewBuffered(stdout, cfg.LogLevel, cfg.AccessLogFlush)
	defer func() { _ = logging.Flush(log) }() // the lines held for one write; an error has nowhere to go
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-a.Done(): // a component failed: the others are stopping already
		log.Error("data plane component failed; shutting down", "err", a.Err())
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	return a.Stop(stopCtx) // returns by stopTimeout, with the failure if there was one
}
