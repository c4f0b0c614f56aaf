package audit

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const (
	// windowEvents is how many events the relay publishes before waiting for their acks.
	windowEvents = 256
	// The relay's wait between failed attempts doubles from minBackoff to maxBackoff;
	// it is cut short when the connection comes back.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// cursorEvery is how often at most the relay saves the cursor while publishing.
	cursorEvery = 200 * time.Millisecond
	// gatherFor is how long an idle relay woken by new events waits for more before
	// it publishes: at low load one pass then carries the events of several
	// requests (one socket write, their acks in one read) instead of one pass, and
	// its wake-ups, per event. The events are on disk already; only their delivery
	// to JetStream waits.
	gatherFor = 2 * time.Millisecond
)

// relayState belongs to the goroutine running the relay.
type relayState struct {
	reader  spoolReader
	futures []jetstream.PubAckFuture
	failing bool // the last attempt failed; logged once per streak
	saved   position
	savedAt time.Time
}

// step is what one pass of the relay found.
type step int

const (
	stepProgress step = iota // published or skipped something: go on
	stepIdle                 // nothing to publish: wait for new events
	stepRetry                // could not publish: back off
)

// Run publishes the spool to JetStream, in order, until ctx ends or Close is
// called: from the cursor to the end, then each batch as Publish writes it. While
// NATS is unreachable or the stream refuses events, it retries with backoff and the
// events wait in the spool. It returns nil when stopped, ErrClosed if the publisher
// is closed, and an error if the relay is already running.
func (p *Publisher) Run(ctx context.Context) error {
	p.mu.Lock()
	switch {
	case p.closed.Load():
		p.mu.Unlock()
		return ErrClosed
	case p.running:
		p.mu.Unlock()
		return errors.New("audit relay is already running")
	}
	p.running = true
	p.runs.Add(1)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.running = false
		p.mu.Unlock()
		p.runs.Done()
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.stop, cancel)()
	nc := p.js.Conn()
	connected := nc.StatusChanged(nats.CONNECTED)
	defer nc.RemoveStatusListener(connected)

	backoff := minBackoff
	for {
		res := p.step(ctx)
		if ctx.Err() != nil {
			break
		}
		switch res {
		case stepProgress:
			backoff = minBackoff
			continue
		case stepIdle:
			backoff = minBackoff
			p.idle(ctx)
		case stepRetry:
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			case <-connected:
			}
			t.Stop()
			backoff = min(2*backoff, maxBackoff)
		}
	}
	_ = p.saveCursor(true)
	return nil
}

// idle waits for more events to publish. A cursor that moved is saved once
// cursorEvery has passed since the last save: at once if it has, else when it has
// unless events come first (a cursor write is an fsync and a rename, which a busy
// relay going idle after every few events would otherwise pay each time).
func (p *Publisher) idle(ctx context.Context) {
	_ = p.saveCursor(false)
	var due <-chan time.Time
	if r := &p.relay; p.spool.position() != r.saved {
		t := time.NewTimer(cursorEvery - time.Since(r.savedAt))
		defer t.Stop()
		due = t.C
	}
	select {
	case <-ctx.Done():
	case <-p.spool.notify:
		t := time.NewTimer(gatherFor)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	case <-due:
		_ = p.saveCursor(true)
	}
}

// drain publishes what is spooled until it is all acknowledged, an attempt fails,
// or ctx ends. Close uses it after Run has stopped.
func (p *Publisher) drain(ctx context.Context) {
	for ctx.Err() == nil && p.step(ctx) == stepProgress {
	}
}

// step publishes the next window of spooled events.
func (p *Publisher) step(ctx context.Context) step {
	r := &p.relay
	w, err := p.spool.next(&r.reader, windowEvents)
	switch {
	case err != nil:
		p.relayFailed("reading the spool failed", err)
		return stepRetry
	case w.corrupt:
		p.o.Log.Error("audit spool: a record is damaged; giving up on the events of its segment up to where it was written",
			"segment", segmentName(w.seg), "offset", w.start, "events", w.limitEvents-w.acked)
		p.spool.skip(w, w.limit, w.limitEvents-w.acked)
		return stepProgress
	case len(w.recs) == 0:
		return stepIdle
	case p.js.Conn().Status() != nats.CONNECTED:
		p.relayFailed("NATS is not connected", nil)
		return stepRetry
	}
	n, err := p.send(ctx, w)
	p.spool.ack(w, n)
	p.m.published.Add(float64(n))
	if err == nil {
		_ = p.saveCursor(false)
		if r.failing {
			r.failing = false
			p.o.Log.Info("audit relay: publishing to JetStream again", "spooled_events", p.spool.stats().events)
		}
		return stepProgress
	}
	if ctx.Err() != nil {
		return stepRetry
	}
	if errors.Is(err, nats.ErrMaxPayload) && n < len(w.recs) {
		// The server's max_payload is below this event: no retry can succeed.
		p.o.Log.Error("audit relay: an event is larger than the NATS max payload; dropping it",
			"request_id", w.recs[n].id, "bytes", len(w.recs[n].data))
		rest := w
		if n > 0 {
			rest.start = w.recs[n-1].end
		}
		p.spool.skip(rest, w.recs[n].end, 1)
		return stepProgress
	}
	p.m.pubErrors.Inc()
	p.relayFailed("publishing to JetStream failed", err)
	return stepRetry
}

// relayFailed logs the first failure of a streak.
func (p *Publisher) relayFailed(what string, err error) {
	if p.relay.failing {
		return
	}
	p.relay.failing = true
	p.o.Log.Warn("audit relay: "+what+"; events wait in the spool and are retried",
		"err", err, "spooled_events", p.spool.stats().events)
}

// send publishes w's records in order without waiting between them, then waits for
// the acks in order. It returns how many records from the start were acknowledged,
// and the error that stopped it.
func (p *Publisher) send(ctx context.Context, w window) (int, error) {
	r := &p.relay
	r.futures = r.futures[:0]
	var pubErr error
	for _, rec := range w.recs {
		msg := &nats.Msg{Subject: rec.subject, Data: rec.data, Header: nats.Header{jetstream.MsgIDHeader: []string{rec.id}}}
		f, err := p.js.PublishMsgAsync(msg, jetstream.WithExpectStream(p.stream))
		if err != nil {
			pubErr = err
			break
		}
		r.futures = append(r.futures, f)
	}
	for i, f := range r.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			// The rest are left to resolve or time out on their own. The ones
			// JetStream stores anyway are dropped as duplicates when resent.
			return i, err
		case <-ctx.Done():
			return i, ctx.Err()
		}
	}
	return len(r.futures), pubErr
}

// saveCursor writes the cursor if it moved, and if force or cursorEvery has passed.
func (p *Publisher) saveCursor(force bool) error {
	r := &p.relay
	pos := p.spool.position()
	if pos == r.saved || (!force && time.Since(r.savedAt) < cursorEvery) {
		return nil
	}
	if err := writeCursor(p.o.SpoolDir, pos); err != nil {
		p.o.Log.Warn("audit spool: saving the cursor failed; events may be published again after a restart", "err", err)
		return err
	}
	r.saved, r.savedAt = pos, time.Now()
	return nil
}
