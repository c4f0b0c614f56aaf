package limits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// workers keeps this worker's heartbeat in PC_WORKERS and answers which other
// holders are alive. Safe for concurrent use.
type workers struct {
	holder string // this process's unique key in PC_WORKERS
	info   []byte // the heartbeat value
	now    func() time.Time

	kv     atomic.Pointer[jetstream.KeyValue] // nil until the bucket is open
	stream atomic.Pointer[jetstream.Stream]   // the bucket's stream, to count keys
	ttl    atomic.Int64                       // the bucket's TTL, in nanoseconds

	mu     sync.Mutex           // guards the fields below
	lastOK time.Time            // when the last heartbeat was stored
	epoch  uint64               // bumps whenever a heartbeat follows a gap
	seen   map[string]time.Time // when another holder was last found alive
	count  atomic.Int64
}

// heartbeat is the value of a worker's key in PC_WORKERS.
type heartbeat struct {
	Version   int       `json:"v"`
	Worker    string    `json:"worker"`
	Region    string    `json:"region"`
	StartedAt time.Time `json:"started_at"`
}

func newWorkers(workerID, region string, now func() time.Time) (*workers, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	w := &workers{holder: keySafe(workerID) + "-" + hex.EncodeToString(b[:]), now: now,
		seen: map[string]time.Time{}}
	w.count.Store(1)
	var err error
	w.info, err = json.Marshal(heartbeat{Version: 1, Worker: workerID, Region: region, StartedAt: now().UTC()})
	return w, err
}

// keySafe maps s to characters a KV key token may hold.
func keySafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

func (w *workers) open(kv jetstream.KeyValue, stream jetstream.Stream, ttl time.Duration) {
	w.ttl.Store(int64(ttl))
	w.stream.Store(&stream)
	w.kv.Store(&kv)
}

// interval is how often the heartbeat is renewed: three times per TTL.
func (w *workers) interval() time.Duration { return time.Duration(w.ttl.Load()) / 3 }

// beat stores the heartbeat.
func (w *workers) beat(ctx context.Context) error {
	kvp := w.kv.Load()
	if kvp == nil {
		return errNotReady
	}
	if _, err := (*kvp).Put(ctx, w.holder, w.info); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	now := w.now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.freshLocked(now) {
		w.epoch++
	}
	w.lastOK = now
	return nil
}

// freshEpoch reports the heartbeat epoch and whether the heartbeat is recent
// enough for this worker's slot holdings to count: within half the TTL, so that no
// other worker can yet have judged it dead.
func (w *workers) freshEpoch(now time.Time) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.epoch, w.freshLocked(now)
}

func (w *workers) freshLocked(now time.Time) bool {
	ttl := time.Duration(w.ttl.Load())
	return ttl > 0 && !w.lastOK.IsZero() && now.Sub(w.lastOK) < ttl/2
}

// aliveFor is how long a holder found alive is taken as alive without a new look.
const aliveFor = time.Second

// refresh counts the live holders, to size leases: the keys of PC_WORKERS, from
// its stream's state (a data plane's NATS identity may not create the consumer a
// key listing takes; docs/nats.md). A worker that stopped cleanly leaves a delete
// marker, counted until the bucket's TTL ages it out: leases are then sized for
// one worker more, the safe side.
func (w *workers) refresh(ctx context.Context) error {
	sp := w.stream.Load()
	if sp == nil {
		return errNotReady
	}
	info, err := (*sp).Info(ctx, jetstream.WithSubjectFilter(natsnames.KVSubject(natsnames.WorkersBucket, ">")))
	if err != nil {
		return fmt.Errorf("list workers: %w", err)
	}
	w.count.Store(int64(max(1, len(info.State.Subjects))))
	now := w.now()
	w.mu.Lock()
	for h, at := range w.seen { // forget holders not looked up for a while
		if now.Sub(at) > time.Minute {
			delete(w.seen, h)
		}
	}
	w.mu.Unlock()
	return nil
}

// dropDead removes from held every other holder whose heartbeat has expired. A
// holder is looked up directly (or taken as alive if found so within aliveFor), so
// a worker that has just started is never mistaken for a dead one.
func (w *workers) dropDead(ctx context.Context, held map[string]int64) error {
	for h := range held {
		if h == w.holder {
			continue
		}
		alive, err := w.alive(ctx, h)
		if err != nil {
			return err
		}
		if !alive {
			delete(held, h)
		}
	}
	return nil
}

func (w *workers) alive(ctx context.Context, holder string) (bool, error) {
	now := w.now()
	w.mu.Lock()
	seen := w.seen[holder]
	w.mu.Unlock()
	if now.Sub(seen) < aliveFor {
		return true, nil
	}
	kvp := w.kv.Load()
	if kvp == nil {
		return false, errNotReady
	}
	_, err := (*kvp).Get(ctx, holder)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// Not cached: a worker back from a partition beats again and re-registers
		// its slots, and must then count as alive.
		w.mu.Lock()
		delete(w.seen, holder)
		w.mu.Unlock()
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up worker %s: %w", holder, err)
	}
	w.mu.Lock()
	w.seen[holder] = now
	w.mu.Unlock()
	return true, nil
}

// remove deletes this worker's heartbeat at shutdown.
func (w *workers) remove(ctx context.Context) {
	if kvp := w.kv.Load(); kvp != nil {
		_ = (*kvp).Delete(ctx, w.holder)
	}
}
