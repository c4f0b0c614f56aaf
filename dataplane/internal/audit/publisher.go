package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Full policies: what Publish does when the spool has no room.
const (
	// RejectRequests refuses the event with ErrSpoolFull; the API answers 503. The default.
	RejectRequests = "reject_requests"
	// DropOldest deletes the oldest segment of events not yet published to make room.
	DropOldest = "drop_oldest"
)

// Defaults of Options.
const (
	DefaultSpoolMaxBytes  = 1 << 30
	DefaultPublishTimeout = 5 * time.Second
	DefaultDrainTimeout   = 2 * time.Second
	// MinSpoolMaxBytes is the smallest spool New accepts.
	MinSpoolMaxBytes = 64 << 10
)

var (
	// ErrSpoolFull means the spool has no room for the event (full policy
	// reject_requests): the event was not accepted.
	ErrSpoolFull = errors.New("audit spool is full")
	// ErrEventTooLarge means the event is too large to spool (over 1 MiB, or an
	// eighth of the spool).
	ErrEventTooLarge = errors.New("audit event too large to spool")
	// ErrClosed means the publisher is closed.
	ErrClosed = errors.New("audit publisher is closed")
)

// Options configure a Publisher.
type Options struct {
	// JetStream reaches the region's audit stream (see EnsureStream). Required. The
	// publisher publishes through its own context on the same connection.
	JetStream jetstream.JetStream
	// Region and Worker identify this worker. Required. An event without a region or
	// worker gets these.
	Region, Worker string
	// SpoolDir is this worker's spool: <data-dir>/audit-spool/<worker-id>. Required.
	// It is locked while the publisher is open.
	SpoolDir string
	// SpoolMaxBytes bounds the spool on disk; zero means DefaultSpoolMaxBytes.
	SpoolMaxBytes int64
	// FullPolicy is RejectRequests (the default when empty) or DropOldest.
	FullPolicy string
	// Sink, if set, gets every event as one JSON line (for fluentbit). Writes are
	// serialised; a failed write is counted and logged, and does not fail Publish.
	Sink io.Writer
	// Log gets the publisher's own problems; nil discards them.
	Log *slog.Logger
	// Registerer gets the metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	// PublishTimeout bounds the wait for JetStream's ack of a published event; zero
	// means DefaultPublishTimeout.
	PublishTimeout time.Duration
	// DrainTimeout bounds how long Close keeps publishing what is spooled; zero means
	// DefaultDrainTimeout. What is left stays in the spool for the next start.
	DrainTimeout time.Duration
}

// validate fills in the defaults and returns every problem with o.
func (o *Options) validate() error {
	if o.SpoolMaxBytes == 0 {
		o.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if o.FullPolicy == "" {
		o.FullPolicy = RejectRequests
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = DefaultPublishTimeout
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	var errs []error
	if o.JetStream == nil {
		errs = append(errs, errors.New("audit publisher: no JetStream"))
	}
	if o.Region == "" {
		errs = append(errs, errors.New("audit publisher: no region"))
	}
	if o.Worker == "" {
		errs = append(errs, errors.New("audit publisher: no worker id"))
	}
	if o.SpoolDir == "" {
		errs = append(errs, errors.New("audit publisher: no spool directory"))
	}
	if o.SpoolMaxBytes < MinSpoolMaxBytes {
		errs = append(errs, fmt.Errorf("audit publisher: spool max bytes %d is below the minimum %d", o.SpoolMaxBytes, MinSpoolMaxBytes))
	}
	if o.FullPolicy != RejectRequests && o.FullPolicy != DropOldest {
		errs = append(errs, fmt.Errorf("audit publisher: full policy %q is not %s or %s", o.FullPolicy, RejectRequests, DropOldest))
	}
	return errors.Join(errs...)
}

// Publisher delivers audit events to the region's JetStream stream through an
// on-disk spool, and writes them to the sink. Publish and Accepting are safe for
// concurrent use; Run runs the relay (one Run at a time); Close ends both. See the
// package documentation for the guarantee.
type Publisher struct {
	o        Options
	stream   string
	js       jetstream.JetStream // our own context on o.JetStream's connection
	spool    *spool
	m        *metrics
	maxEvent int // largest record accepted
	bufs     sync.Pool

	sinkMu      sync.Mutex // guards sinkFailing and serialises writes to o.Sink
	sinkFailing bool

	closed  atomic.Bool
	mu      sync.Mutex // guards running, and orders Run against Close
	running bool
	runs    sync.WaitGroup
	stop    context.Context // cancelled by Close, which ends Run
	stopRun context.CancelFunc
	closing sync.Once
	err     error // of Close

	// relay is used by one goroutine at a time: Run, then Close.
	relay relayState
}

// New opens the spool in o.SpoolDir (replaying what a previous run left there once
// Run starts) and returns a publisher.
func New(o Options) (*Publisher, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	// The same API prefix as o.JetStream's, if it has one (a data plane's account
	// reaches JetStream through one; docs/nats.md).
	jsOpts := []jetstream.JetStreamOpt{jetstream.WithPublishAsyncTimeout(o.PublishTimeout),
		jetstream.WithPublishAsyncMaxPending(16 * windowEvents)}
	var js jetstream.JetStream
	var err error
	if prefix := o.JetStream.Options().APIPrefix; prefix != "" {
		js, err = jetstream.NewWithAPIPrefix(o.JetStream.Conn(), prefix, jsOpts...)
	} else {
		js, err = jetstream.New(o.JetStream.Conn(), jsOpts...)
	}
	if err != nil {
		return nil, fmt.Errorf("audit publisher: %w", err)
	}
	m := newMetrics()
	s, err := openSpool(spoolOptions{
		dir: o.SpoolDir, maxBytes: o.SpoolMaxBytes, dropOldest: o.FullPolicy == DropOldest,
		log: o.Log, dropped: m.dropped, rejected: m.rejected,
	})
	if err != nil {
		return nil, err
	}
	if err := m.register(o.Registerer, s); err != nil {
		s.stopAppends()
		return nil, errors.Join(fmt.Errorf("audit publisher metrics: %w", err), s.close())
	}
	p := &Publisher{
		o: o, stream: natsnames.AuditStream(o.Region), js: js, spool: s, m: m,
		maxEvent: int(min(maxRecordLen, o.SpoolMaxBytes/8)),
		bufs:     sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }},
	}
	p.stop, p.stopRun = context.WithCancel(context.Background())
	return p, nil
}

// Publish writes e's JSON line to the sink and appends e to the spool, returning
// once the spool holds it durably (fsync'd); the relay publishes it from there.
// Once Publish returns nil, the event is not lost (see the package documentation).
// It returns ErrSpoolFull when the spool is full under reject_requests, in which
// case the sink has the line but JetStream will not get the event.
//
// An event without a region or worker gets the publisher's; an event of another
// region, or without a request id, is refused.
func (p *Publisher) Publish(e audit.Event) error {
	var err error
	p.PublishAll([]audit.Event{e}, func(_ audit.Event, e error) { err = e })
	return err
}

// PublishAll is Publish of every event in events, at the cost of one: their sink
// lines go out in one write and their records in one spool append (one fsync).
// It returns once every event is spooled or refused; refused is called, in order,
// with each event that was not kept and why (as Publish would have returned it).
// A refused event does not stop the others, except that a failed spool append
// refuses every event of the call that got that far. PublishAll works in events:
// it fills in each event's region and worker and moves the kept ones to the front.
func (p *Publisher) PublishAll(events []audit.Event, refused func(audit.Event, error)) {
	if p.closed.Load() {
		for _, e := range events {
			refused(e, ErrClosed)
		}
		return
	}
	bp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(bp)
	lines := (*bp)[:0]
	rp := p.bufs.Get().(*[]byte)
	defer p.bufs.Put(rp)
	recs := (*rp)[:0]
	now := time.Now().UnixNano()
	kept := 0
	var ends []int // where each kept event's record ends in recs
	for i := range events {
		e := &events[i]
		data, subject, err := p.encode(e)
		if err != nil {
			refused(*e, err)
			continue
		}
		lines = append(append(lines, data...), '\n')
		recs = appendRecord(recs, now, subject, e.RequestID, data)
		ends = append(ends, len(recs))
		events[kept] = *e // the kept events, in order, for a failed append
		kept++
	}
	*bp, *rp = lines, recs
	if kept == 0 {
		return
	}
	p.writeSink(lines)
	err := p.spool.append(recs, int64(kept), now)
	if errors.Is(err, ErrSpoolFull) && kept > 1 {
		// Not room for them all: keep the ones there is room for, as many calls
		// to Publish would.
		start := 0
		for i, end := range ends {
			if err := p.spool.append(recs[start:end], 1, now); err != nil {
				refused(events[i], err)
			}
			start = end
		}
		return
	}
	if err != nil {
		for _, e := range events[:kept] {
			refused(e, err)
		}
	}
}

// encode fills in e's region and worker, checks it, and returns its JSON and the
// subject it is published on.
func (p *Publisher) encode(e *audit.Event) (data []byte, subject string, err error) {
	switch {
	case e.RequestID == "":
		return nil, "", errors.New("audit event without a request id")
	case len(e.RequestID) > maxRequestIDLen:
		return nil, "", fmt.Errorf("audit event request id longer than %d bytes", maxRequestIDLen)
	case e.Region == "":
		e.Region = p.o.Region
	case e.Region != p.o.Region:
		return nil, "", fmt.Errorf("audit event of region %q given to the publisher of region %q", e.Region, p.o.Region)
	}
	if e.Worker == "" {
		e.Worker = p.o.Worker
	}
	data, err = audit.Encode(*e)
	if err != nil {
		return nil, "", fmt.Errorf("encode audit event: %w", err)
	}
	subject = natsnames.AuditSubject(p.o.Region, e.ClientID)
	if recordLen(subject, e.RequestID, data) > p.maxEvent {
		return nil, "", ErrEventTooLarge
	}
	return data, subject, nil
}

// Accepting returns ErrSpoolFull while the spool is full under reject_requests (or
// an error if it is unusable), so that the API can answer 503 before serving a
// request rather than after. It is a hint: Publish can still refuse.
func (p *Publisher) Accepting() error {
	err := p.spool.room(acceptHeadroom)
	if errors.Is(err, ErrSpoolFull) && p.o.FullPolicy == DropOldest {
		return nil
	}
	return err
}

// acceptHeadroom is the room Accepting asks for: a few typical events.
const acceptHeadroom = 16 << 10

func (p *Publisher) writeSink(line []byte) {
	if p.o.Sink == nil {
		return
	}
	p.sinkMu.Lock()
	defer p.sinkMu.Unlock()
	if _, err := p.o.Sink.Write(line); err != nil {
		p.m.sinkErrors.Inc()
		if !p.sinkFailing {
			p.o.Log.Error("audit sink: writing an event failed; events still go to JetStream", "err", err)
			p.sinkFailing = true
		}
		return
	}
	if p.sinkFailing {
		p.o.Log.Info("audit sink: writing events again")
		p.sinkFailing = false
	}
}

// Close stops accepting events, stops Run, publishes what is spooled for up to
// DrainTimeout, saves the cursor and closes the spool. What is left is replayed by
// the next publisher on the same directory. Call it before the NATS connection is
// drained or closed. Close is idempotent.
func (p *Publisher) Close() error { return p.Shutdown(context.Background()) }

// Shutdown is Close within ctx: the drain of what is spooled also ends when ctx
// does (what is left is replayed by the next publisher). Like Close, it is
// idempotent, and later calls return the first one's result.
func (p *Publisher) Shutdown(ctx context.Context) error {
	p.closing.Do(func() {
		p.mu.Lock()
		p.closed.Store(true)
		p.mu.Unlock()
		p.spool.stopAppends()
		p.stopRun()
		p.runs.Wait()

		dctx, cancel := context.WithTimeout(ctx, p.o.DrainTimeout)
		p.drain(dctx)
		cancel()
		if left := p.spool.stats().events; left > 0 {
			p.o.Log.Warn("audit publisher closed with events in the spool; the next start replays them",
				"events", left, "dir", p.o.SpoolDir)
		}
		// No CleanupPublisher: the async-ack subscription lives as long as the
		// connection, which is not ours (and cleaning up races nats.go's own
		// goroutine for a publisher that has just published its first event).
		p.relay.reader.close()
		p.err = errors.Join(p.saveCursor(true), p.spool.close())
	})
	return p.err
}
