package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sizes of the spool's segments: a sixteenth of the bound, within these limits, so
// that drop_oldest frees a sixteenth at a time and a fully acknowledged segment
// holds little disk before it is deleted.
const (
	minSegmentBytes = 4 << 10
	maxSegmentBytes = 64 << 20
	segmentSuffix   = ".seg"
)

// segment is one spool file. Only the last segment of a spool is written to (the
// active one); the others are sealed.
type segment struct {
	id      uint64
	size    int64 // bytes on disk, all fsync'd
	events  int64 // records in those bytes
	firstTS int64 // append time of its first record (Unix ns); 0 while empty
}

func segmentName(id uint64) string { return fmt.Sprintf("%020d%s", id, segmentSuffix) }

// spoolOptions configure openSpool.
type spoolOptions struct {
	dir        string
	maxBytes   int64
	dropOldest bool
	log        *slog.Logger
	dropped    prometheus.Counter // events given up (drop_oldest, damaged records)
	rejected   prometheus.Counter // appends refused because the spool was full
}

// spool is the append-only, bounded, on-disk queue of events between Publish and
// JetStream. Appends are group-committed: an append returns once its record is
// written and fsync'd, and the records appended while one fsync runs share the
// next. A single reader (the relay) reads from the cursor and advances it as
// JetStream acknowledges. Safe for concurrent use.
type spool struct {
	o      spoolOptions
	segMax int64
	lock   *os.File

	// notify gets a token, without blocking, after every batch written.
	notify chan struct{}

	mu       sync.Mutex // guards everything below
	written  *sync.Cond // broadcast on mu when a batch is done
	segs     []*segment // oldest first, never empty; the last is active
	active   *os.File   // the last segment, open for appending
	open     *batch     // collects appends until the next write
	spare    []byte
	flushing bool  // a goroutine is writing a batch, with mu released
	inflight int64 // bytes admitted but not yet on disk
	bytes    int64 // bytes on disk: the sum of segs' sizes
	events   int64 // records on disk: the sum of segs' events
	cur      int64 // offset in segs[0] up to which JetStream has acknowledged
	curAcked int64 // records of segs[0] before cur
	curTS    int64 // append time of the oldest unacknowledged record; 0: none or not yet read
	rotate   bool  // start a new segment before the next write
	closed   bool
	broken   error // a failed write could not be undone; every later append fails
}

// openSpool opens or creates the spool in o.dir: it locks the directory, checks
// every record, truncates a torn or damaged tail, and finds the cursor.
func openSpool(o spoolOptions) (*spool, error) {
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return nil, fmt.Errorf("create audit spool: %w", err)
	}
	lock, err := lockDir(o.dir)
	if err != nil {
		return nil, err
	}
	s := &spool{
		o:      o,
		segMax: min(max(o.maxBytes/16, minSegmentBytes), maxSegmentBytes),
		lock:   lock,
		notify: make(chan struct{}, 1),
		open:   &batch{},
	}
	s.written = sync.NewCond(&s.mu)
	if err := s.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// spoolStats is what the metrics show.
type spoolStats struct {
	bytes  int64
	events int64 // not yet acknowledged by JetStream
	oldest time.Time
}

func (s *spool) stats() spoolStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := spoolStats{bytes: s.bytes, events: s.events - s.curAcked}
	if st.events > 0 && s.curTS != 0 {
		st.oldest = time.Unix(0, s.curTS)
	}
	return st
}

// close closes the files and releases the directory lock; call stopAppends first.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.active.Close()
	return errors.Join(err, s.lock.Close())
}
