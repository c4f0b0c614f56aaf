package app

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	dpaudit "github.com/portcullis-gw/portcullis/dataplane/internal/audit"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// minAuditKeyBytes is the least key material the audit key file must hold.
const minAuditKeyBytes = 32

// startAudit makes sure the region's audit stream exists, opens the spool and the
// sink, and returns the key of the prompt and response hashes.
func (a *App) startAudit(ctx context.Context, cfg Config, js jetstream.JetStream, log *slog.Logger, reg prometheus.Registerer) ([]byte, error) {
	key, err := auditKey(cfg.AuditKeyFile, log)
	if err != nil {
		return nil, err
	}
	streamOpts := dpaudit.StreamOptions{Region: cfg.Region, PlacementTag: cfg.AuditPlacementTag,
		Replicas: cfg.AuditStreamReplicas, MaxAge: cfg.AuditStreamMaxAge}
	if !ensureAuditStream(ctx, js, streamOpts, log, slog.LevelWarn) {
		// NATS or the control plane may be down at start: the spool keeps the events
		// until the stream exists, and the worker keeps asking for it.
		a.group.Go("audit stream", func(ctx context.Context) error {
			for ctx.Err() == nil && !ensureAuditStream(ctx, js, streamOpts, log, slog.LevelDebug) {
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
			}
			return nil
		})
	}
	var sink io.Writer
	switch cfg.AuditSink {
	case "", "none":
	case "stdout":
		sink = os.Stdout
	default:
		f, err := os.OpenFile(cfg.AuditSink, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit sink: %w", err)
		}
		sink, a.sink = f, f
	}
	a.audit, err = dpaudit.New(dpaudit.Options{JetStream: js, Region: cfg.Region, Worker: cfg.WorkerID,
		SpoolDir: cfg.AuditSpoolDir, SpoolMaxBytes: cfg.AuditSpoolMaxBytes, FullPolicy: cfg.AuditFullPolicy,
		Sink: sink, Log: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	return key, nil
}

// ensureAuditStream asks the control plane for the region's audit stream (a data
// plane may not create it itself) and reports whether that is settled: created,
// there already, or there with other settings (logged as a warning). A failure is
// logged at failed.
func ensureAuditStream(ctx context.Context, js jetstream.JetStream, o dpaudit.StreamOptions, log *slog.Logger, failed slog.Level) bool {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := dpaudit.EnsureStream(rctx, js, o)
	switch {
	case err == nil:
		return true
	case errors.Is(err, dpaudit.ErrStreamSettingsDiffer):
		log.Warn("audit stream settings differ from this worker's audit-stream-* settings", "err", err)
		return true
	}
	log.Log(ctx, failed, "audit stream not ensured yet; events wait in the spool", "err", err)
	return false
}

// auditKey reads the hash key from path, or makes a random one (with a warning)
// when path is empty.
func auditKey(path string, log *slog.Logger) ([]byte, error) {
	if path == "" {
		log.Warn("no PORTCULLIS_AUDIT_KEY_FILE: prompt and response hashes use a random key of this process, " +
			"so they do not correlate across workers or restarts")
		key := make([]byte, minAuditKeyBytes)
		_, _ = rand.Read(key)
		return key, nil
	}
	raw, err := secretfile.Read(config.EnvName("audit-key-file"), path, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("audit key file: %w", err)
	}
	key := []byte(strings.TrimSpace(string(raw)))
	if len(key) < minAuditKeyBytes {
		return nil, fmt.Errorf("audit key file %s: holds %d bytes; at least %d are needed", path, len(key), minAuditKeyBytes)
	}
	return key, nil
}

// splitList splits a comma-separated list, trimming blanks.
func splitList(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// maxAsyncAudit bounds the audit events waiting to be spooled behind answered
// requests; past it, a request spools its own event before it returns.
const maxAsyncAudit = 1024

// asyncAudit spools each event after its request has been answered, so that the
// spool's fsync is not part of any request's latency. One goroutine takes every
// event waiting and hands them to the publisher together: one sink write and one
// spool append (one fsync) for all of them, while the next ones gather. An event is
// durable within one group commit of its answer (the answer is sent before the
// event is built in any case); Wait lets a stop spool every event of the requests
// served.
type asyncAudit struct {
	p   *dpaudit.Publisher
	log *slog.Logger

	mu      sync.Mutex    // guards queue and closed
	queue   []audit.Event // waiting for the writer
	closed  bool          // Wait began: hand events to the publisher directly
	wake    chan struct{} // a token when queue is not empty
	stopped chan struct{} // closed when the writer has spooled the last of queue
}

func newAsyncAudit(p *dpaudit.Publisher, log *slog.Logger) *asyncAudit {
	a := &asyncAudit{p: p, log: log, wake: make(chan struct{}, 1), stopped: make(chan struct{}),
		queue: make([]audit.Event, 0, 64)}
	go a.write()
	return a
}

func (a *asyncAudit) Accepting() error { return a.p.Accepting() }

func (a *asyncAudit) Publish(e audit.Event) error {
	a.mu.Lock()
	if a.closed || len(a.queue) >= maxAsyncAudit {
		// After Wait (a handler still running after a kill), or too many behind:
		// this request waits for its own event (backpressure).
		a.mu.Unlock()
		return a.p.Publish(e)
	}
	a.queue = append(a.queue, e)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	return nil
}

// writerNice is how much lower the writer's OS thread is scheduled than the
// request path's. Its fsync's CPU work (the kernel's, on its thread) then yields to
// the next requests: on a 2-CPU VM the added p50 at one connection fell from about
// 3.1-3.5x nginx's to 2.6-2.9x in paired runs of make bench. The writer needs a few
// percent of a CPU at full load, which a nice of 5 (a third of a normal thread's
// weight when the CPUs are saturated) still gives it.
const writerNice = 5

// write is the writer goroutine: it spools what is queued, in turns, until Wait
// has begun and the queue is empty.
func (a *asyncAudit) write() {
	defer close(a.stopped)
	lowerThreadPriority(writerNice)
	var batch []audit.Event
	for range a.wake {
		a.mu.Lock()
		batch, a.queue = a.queue, batch[:0]
		closed := a.closed
		a.mu.Unlock()
		if len(batch) > 0 {
			a.p.PublishAll(batch, a.refused)
			clear(batch) // no event outlives its turn
		}
		if closed {
			return
		}
	}
}

func (a *asyncAudit) refused(e audit.Event, err error) {
	a.log.Error("audit event not kept", "request_id", e.RequestID, "err", err)
}

// Wait returns once every event handed over is spooled (or refused); events handed
// over later go to the publisher directly. Call it once.
func (a *asyncAudit) Wait() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
	select { // the writer takes what is queued, then stops
	case a.wake <- struct{}{}:
	default:
	}
	<-a.stopped
}
