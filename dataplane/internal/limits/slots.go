package limits

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// concTTL is how long a concurrency key outlives its last write. It only clears
// keys of clients gone quiet; it is far longer than any request may run.
const concTTL = 24 * time.Hour

// concDoc is the value of a client's concurrency key: how many slots each live
// worker (holder) holds. Attributing slots to holders is what lets a worker reclaim
// the slots of one whose heartbeat has expired.
type concDoc struct {
	Version int              `json:"v"`
	Held    map[string]int64 `json:"held"`
}

func (d concDoc) total() int64 {
	var n int64
	for _, h := range d.Held {
		n += h
	}
	return n
}

// slots is one client's concurrency budget on this worker: the slots it holds in
// the global key (held) and how many of them requests are using (inFlight). mu
// guards every field below it and is held across the KV operations of one lease.
type slots struct {
	key string

	mu        sync.Mutex
	limit     int64
	inFlight  int64
	held      int64 // slots this worker holds in the global key, in-flight ones included
	doc       concDoc
	rev       uint64
	fresh     bool
	streak    int64
	lastUse   time.Time
	epoch     uint64 // the heartbeat epoch held belongs to
	localOnly int64  // fail_open admissions made without the global key
	returning bool
}

func newSlots(client string) *slots { return &slots{key: natsnames.LimitsConcurrencyPrefix + client} }

// slotGrant records how one slot was admitted.
type slotGrant struct{ owed bool }

// acquire takes one slot under limit.
func (s *slots) acquire(ctx context.Context, l *Limiter, now time.Time, limit int64) (slotGrant, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit != s.limit {
		s.limit, s.streak = limit, 0
	}
	epoch, fresh := l.workers.freshEpoch(now)
	if fresh && s.epoch == epoch && s.held > s.inFlight && s.inFlight < limit {
		s.inFlight++
		s.lastUse = now
		return slotGrant{}, nil
	}
	if err := l.unreachable(); err != nil {
		return s.acquireUnreachable(l, limit, err)
	}
	if !fresh {
		// Holdings count only while this worker's heartbeat is current: after a gap,
		// others may have reclaimed them. Beat now, before touching the key.
		if err := l.workers.beat(ctx); err != nil {
			return s.acquireUnreachable(l, limit, err)
		}
		epoch, _ = l.workers.freshEpoch(l.now())
	}
	if s.epoch != epoch {
		if err := s.resync(ctx, l); err != nil {
			return s.acquireUnreachable(l, limit, err)
		}
		s.epoch = epoch
	}
	if s.held > s.inFlight && s.inFlight < limit {
		s.inFlight++
		s.lastUse = now
		return slotGrant{}, nil
	}
	me := l.workers.holder
	readNow, reclaimed := false, false
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		if !s.fresh {
			if err := s.read(ctx, l); err != nil {
				return s.acquireUnreachable(l, limit, err)
			}
			readNow = true
		}
		doc := s.docCopy()
		doc.Held[me] = s.held
		remaining := limit - doc.total()
		if remaining < 1 && !readNow {
			s.fresh = false
			continue
		}
		if remaining < 1 && !reclaimed {
			reclaimed = true
			if err := l.workers.dropDead(ctx, doc.Held); err != nil {
				return s.acquireUnreachable(l, limit, err)
			}
			remaining = limit - doc.total()
		}
		if remaining < 1 {
			return slotGrant{}, &Denied{Kind: KindConcurrency, Limit: limit, RetryAfter: concurrencyRetryAfter}
		}
		lease := leaseSize(remaining, 1, l.liveWorkers(), s.streak)
		doc.Held[me] = s.held + lease
		if err := s.write(ctx, l, doc); err != nil {
			if err == errConflict {
				continue
			}
			return s.acquireUnreachable(l, limit, err)
		}
		l.metrics.leases.WithLabelValues(KindConcurrency).Inc()
		s.held += lease
		s.inFlight++
		s.streak = min(lease*2, maxStreak)
		s.lastUse = now
		return slotGrant{}, nil
	}
	return slotGrant{}, errContention
}

// resync re-registers this worker's holdings after a heartbeat gap: the key must
// count at least the slots in flight here, even past the limit, so that no other
// worker admits into them. s.mu is held.
func (s *slots) resync(ctx context.Context, l *Limiter) error {
	if err := s.read(ctx, l); err != nil {
		return err
	}
	s.held = s.doc.Held[l.workers.holder]
	if s.held >= s.inFlight {
		return nil
	}
	if err := s.putMine(ctx, l, s.inFlight); err != nil {
		return err
	}
	s.held = s.inFlight
	return nil
}

// putMine compare-and-swaps this worker's entry in the key to n, reading the key
// again after a conflict. s.mu is held.
func (s *slots) putMine(ctx context.Context, l *Limiter, n int64) error {
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		if err := l.unreachable(); err != nil {
			return err
		}
		if !s.fresh {
			if err := s.read(ctx, l); err != nil {
				return err
			}
		}
		doc := s.docCopy()
		doc.Held[l.workers.holder] = n
		err := s.write(ctx, l, doc)
		if err != errConflict {
			return err
		}
	}
	return errContention
}

// docCopy is a copy of the known key that can be changed. s.mu is held.
func (s *slots) docCopy() concDoc {
	held := maps.Clone(s.doc.Held)
	if held == nil {
		held = map[string]int64{}
	}
	return concDoc{Version: 1, Held: held}
}

func (s *slots) read(ctx context.Context, l *Limiter) error {
	data, rev, err := l.counters().get(ctx, s.key)
	if err != nil {
		return err
	}
	var doc concDoc
	if len(data) > 0 {
		if err := json.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("concurrency key %s: %w", s.key, err)
		}
	}
	s.doc, s.rev, s.fresh = doc, rev, true
	return nil
}

// write compare-and-swaps doc over the known revision. s.mu is held.
func (s *slots) write(ctx context.Context, l *Limiter, doc concDoc) error {
	for h, n := range doc.Held {
		if n <= 0 {
			delete(doc.Held, h)
		}
	}
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	rev, err := l.counters().cas(ctx, s.key, data, s.rev, concTTL)
	if err != nil {
		s.fresh = false
		return err
	}
	s.doc, s.rev, s.fresh = doc, rev, true
	return nil
}

func (s *slots) acquireUnreachable(l *Limiter, limit int64, cause error) (slotGrant, error) {
	l.markUnreachable(cause)
	if !l.failOpen {
		return slotGrant{}, unavailable(cause)
	}
	if s.inFlight+s.localOnly >= limit {
		return slotGrant{}, &Denied{Kind: KindConcurrency, Limit: limit, RetryAfter: concurrencyRetryAfter}
	}
	s.localOnly++
	return slotGrant{owed: true}, nil
}

// release gives back one slot taken by acquire.
func (s *slots) release(l *Limiter, g slotGrant) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g.owed {
		s.localOnly = max(0, s.localOnly-1)
		return
	}
	s.inFlight = max(0, s.inFlight-1)
	s.lastUse = l.now()
	if s.held > s.inFlight && s.limit-s.doc.total() < tightFactor*l.liveWorkers() {
		s.scheduleGiveBack(l)
	}
}

func (s *slots) scheduleGiveBack(l *Limiter) {
	if s.returning {
		return
	}
	s.returning = true
	l.async(func(ctx context.Context) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.returning = false
		s.giveBack(ctx, l)
	})
}

// giveBack returns the slots this worker holds but does not use. s.mu is held.
func (s *slots) giveBack(ctx context.Context, l *Limiter) {
	if _, fresh := l.workers.freshEpoch(l.now()); !fresh || s.held <= s.inFlight {
		return // after a heartbeat gap, holdings are re-registered on the next acquire
	}
	if s.putMine(ctx, l, s.inFlight) == nil {
		s.held, s.streak = s.inFlight, 0
	}
}

// sweep gives back slots idle since before idleBefore.
func (s *slots) sweep(ctx context.Context, l *Limiter, idleBefore time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held > s.inFlight && s.lastUse.Before(idleBefore) {
		s.giveBack(ctx, l)
	}
}

// giveBackAll returns every slot not in flight, at shutdown.
func (s *slots) giveBackAll(ctx context.Context, l *Limiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.giveBack(ctx, l)
}
