package audit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

// maxSpareBytes bounds the write buffer the spool keeps between batches.
const maxSpareBytes = 4 << 20

// segment is one spool file. Only the last segment of a spool is written to (the
// active one); the others are sealed.
type segment struct {
	id      uint64
	size    int64 // bytes on disk, all fsync'd
	events  int64 // records in those bytes
	firstTS int64 // append time of its first record (Unix ns); 0 while empty
}

func segmentName(id uint64) string { return fmt.Sprintf("%020d%s", id, segmentSuffix) }

// batch is the records appended while the previous batch was being written: the
// unit of group commit.
type batch struct {
	buf     []byte
	events  int64
	firstTS int64
	done    bool
	err     error
}

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

// recover loads the segments and the cursor from disk.
func (s *spool) recover() error {
	entries, err := os.ReadDir(s.o.dir)
	if err != nil {
		return fmt.Errorf("read audit spool: %w", err)
	}
	var ids []uint64
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		id, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			s.o.log.Warn("audit spool: ignoring a file that is not a segment", "file", e.Name())
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	_ = os.Remove(filepath.Join(s.o.dir, cursorTmpFile))

	cur, haveCur := readCursor(s.o.dir)
	nextID := cur.seg + 1
	var nextTS int64
	for i, id := range ids {
		nextID = max(nextID, id+1)
		if haveCur && id < cur.seg {
			// Acknowledged in full; the worker stopped before deleting it.
			if err := os.Remove(filepath.Join(s.o.dir, segmentName(id))); err != nil {
				return fmt.Errorf("remove acknowledged audit spool segment: %w", err)
			}
			continue
		}
		ackedTo := int64(-1)
		if haveCur && id == cur.seg {
			ackedTo = cur.off
		}
		seg, sc, err := s.scanSegment(id, ackedTo, i == len(ids)-1)
		if err != nil {
			return err
		}
		if ackedTo >= 0 {
			s.cur, s.curAcked, nextTS = sc.ackedTo, sc.acked, sc.nextTS
		}
		s.segs = append(s.segs, seg)
		s.bytes += seg.size
		s.events += seg.events
	}
	if len(s.segs) == 0 {
		f, err := s.createSegment(nextID)
		if err != nil {
			return err
		}
		s.segs = []*segment{{id: nextID}}
		s.active = f
		return nil
	}
	if s.events > s.curAcked {
		if !haveCur || s.segs[0].id != cur.seg {
			nextTS = s.segs[0].firstTS
		}
		s.curTS = nextTS
		for _, seg := range s.segs[1:] {
			if s.curTS != 0 {
				break
			}
			s.curTS = seg.firstTS
		}
		s.o.log.Info("audit spool: events to replay", "events", s.events-s.curAcked, "dir", s.o.dir)
	}
	last := s.segs[len(s.segs)-1]
	s.active, err = os.OpenFile(filepath.Join(s.o.dir, segmentName(last.id)), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open audit spool segment: %w", err)
	}
	return nil
}

// segmentScan is what scanSegment learns about the cursor in its segment.
type segmentScan struct {
	ackedTo int64 // the cursor, moved back to a record boundary if it was not on one
	acked   int64 // records before ackedTo
	nextTS  int64 // append time of the first record at or after ackedTo
}

// scanSegment checks every record of segment id and truncates the segment after the
// last good one. ackedTo is the cursor if it is in this segment, else -1.
func (s *spool) scanSegment(id uint64, ackedTo int64, last bool) (*segment, segmentScan, error) {
	path := filepath.Join(s.o.dir, segmentName(id))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, segmentScan{}, fmt.Errorf("open audit spool segment: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, segmentScan{}, fmt.Errorf("stat audit spool segment: %w", err)
	}
	r := bufio.NewReaderSize(f, 256<<10)
	seg := &segment{id: id}
	var sc segmentScan
	var off int64
	buf := make([]byte, recordHeaderLen, 4096)
	problem := ""
	for {
		buf = buf[:recordHeaderLen]
		if _, err := io.ReadFull(r, buf); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				problem = "torn record header"
			} else if !errors.Is(err, io.EOF) {
				return nil, segmentScan{}, fmt.Errorf("read audit spool segment: %w", err)
			}
			break
		}
		bodyLen := int(binary.BigEndian.Uint32(buf))
		if bodyLen < recordMinBody || bodyLen > maxRecordLen-recordHeaderLen {
			problem = "bad record length"
			break
		}
		buf = slices.Grow(buf, bodyLen)[:recordHeaderLen+bodyLen]
		if _, err := io.ReadFull(r, buf[recordHeaderLen:]); err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				return nil, segmentScan{}, fmt.Errorf("read audit spool segment: %w", err)
			}
			problem = "torn record"
			break
		}
		rec, n, err := decodeRecord(buf)
		if err != nil {
			problem = "record checksum mismatch"
			break
		}
		if seg.events == 0 {
			seg.firstTS = rec.ts
		}
		switch {
		case ackedTo < 0:
		case off+int64(n) <= ackedTo:
			sc.acked++
			sc.ackedTo = off + int64(n)
		case sc.nextTS == 0:
			sc.nextTS = rec.ts
		}
		seg.events++
		off += int64(n)
	}
	seg.size = off
	if off < st.Size() {
		if err := f.Truncate(off); err != nil {
			return nil, segmentScan{}, fmt.Errorf("truncate audit spool segment: %w", err)
		}
		if err := f.Sync(); err != nil {
			return nil, segmentScan{}, fmt.Errorf("sync audit spool segment: %w", err)
		}
		if problem == "" {
			problem = "trailing bytes"
		}
		attrs := []any{"segment", path, "offset", off, "bytes_removed", st.Size() - off, "problem", problem}
		if last {
			// A crash while a batch was being written: none of its events had been
			// confirmed to a caller, since Publish returns only after the fsync.
			s.o.log.Warn("audit spool: truncated a torn record at the end of the spool", attrs...)
		} else {
			s.o.log.Error("audit spool: a sealed segment is damaged; truncated it, its events after the damage are lost", attrs...)
		}
	}
	return seg, sc, nil
}

// createSegment creates the file of segment id, durably: the directory entry is
// fsync'd too, or a crash could lose a file whose data was.
func (s *spool) createSegment(id uint64) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(s.o.dir, segmentName(id)), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create audit spool segment: %w", err)
	}
	if err := syncDir(s.o.dir); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync audit spool directory: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync audit spool directory: %w", err)
	}
	return nil
}

// append makes rec durable: it returns nil only once rec is written and fsync'd. It
// returns ErrSpoolFull when the spool has no room (after dropping the oldest
// segments, under drop_oldest), and ErrClosed after close.
func (s *spool) append(rec []byte, ts int64) error {
	n := int64(len(rec))
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.broken != nil:
		return fmt.Errorf("audit spool unusable after a failed write: %w", s.broken)
	}
	if err := s.admitLocked(n); err != nil {
		return err
	}
	b := s.open
	if b.events == 0 {
		b.firstTS = ts
	}
	b.buf = append(b.buf, rec...)
	b.events++
	s.inflight += n
	for !b.done {
		if s.flushing {
			s.written.Wait()
			continue
		}
		// No one is writing, so b is still the open batch: write it.
		s.writeLocked()
	}
	return b.err
}

// admitLocked makes room for n more bytes or returns ErrSpoolFull.
func (s *spool) admitLocked(n int64) error {
	for s.bytes+s.inflight+n > s.o.maxBytes {
		if !s.o.dropOldest || !s.dropOldestLocked() {
			s.o.rejected.Inc()
			return ErrSpoolFull
		}
	}
	return nil
}

// room returns nil if n more bytes would be admitted without dropping anything,
// ErrSpoolFull if not, and an error if the spool is unusable.
func (s *spool) room(n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.broken != nil:
		return fmt.Errorf("audit spool unusable after a failed write: %w", s.broken)
	case s.bytes+s.inflight+n > s.o.maxBytes:
		return ErrSpoolFull
	}
	return nil
}

// writeLocked writes and fsyncs the open batch. It releases mu during the I/O; the
// caller holds mu and has checked that no other goroutine is writing.
func (s *spool) writeLocked() {
	b := s.open
	s.open = &batch{buf: s.spare}
	s.spare = nil
	s.flushing = true
	seg := s.segs[len(s.segs)-1]
	f, size := s.active, seg.size
	rotate := s.rotate || size >= s.segMax
	s.mu.Unlock()

	var nf *os.File
	var err, broken error
	if rotate {
		if nf, err = s.createSegment(seg.id + 1); err == nil {
			f, size = nf, 0
		}
	}
	if err == nil {
		if _, err = f.Write(b.buf); err == nil {
			err = f.Sync()
		}
		if err != nil {
			// Undo the partial write so that no record of a failed batch is ever
			// published, and the next batch starts on a record boundary.
			if terr := f.Truncate(size); terr != nil {
				broken = terr
			} else if serr := f.Sync(); serr != nil {
				broken = serr
			}
		}
	}

	s.mu.Lock()
	if nf != nil {
		if cerr := s.active.Close(); cerr != nil {
			s.o.log.Warn("audit spool: closing a sealed segment failed", "err", cerr)
		}
		s.active = nf
		seg = &segment{id: seg.id + 1}
		s.segs = append(s.segs, seg)
		s.rotate = false
	}
	n := int64(len(b.buf))
	s.inflight -= n
	if err == nil {
		if s.events == s.curAcked {
			s.curTS = b.firstTS
		}
		if seg.events == 0 {
			seg.firstTS = b.firstTS
		}
		seg.size += n
		seg.events += b.events
		s.bytes += n
		s.events += b.events
	} else {
		b.err = fmt.Errorf("write audit spool: %w", err)
		s.rotate = true
		if broken != nil {
			s.broken = broken
			s.o.log.Error("audit spool: a failed write could not be undone; refusing further events", "err", broken)
		}
	}
	b.done = true
	s.flushing = false
	if cap(b.buf) <= maxSpareBytes {
		s.spare = b.buf[:0]
	}
	s.written.Broadcast()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// dropOldestLocked deletes the oldest segment to make room, counting its events not
// yet acknowledged as dropped. It reports false when only the active segment is left.
func (s *spool) dropOldestLocked() bool {
	if len(s.segs) < 2 {
		return false
	}
	seg := s.segs[0]
	lost := seg.events - s.curAcked
	s.removeOldestLocked()
	if lost > 0 {
		s.o.dropped.Add(float64(lost))
		s.o.log.Error("audit spool full: dropped the oldest events not yet published (full policy drop_oldest)",
			"events", lost, "segment", segmentName(seg.id))
	}
	return true
}

// removeOldestLocked deletes segs[0] and puts the cursor at the start of the next.
func (s *spool) removeOldestLocked() {
	seg := s.segs[0]
	s.segs[0] = nil
	s.segs = s.segs[1:]
	s.bytes -= seg.size
	s.events -= seg.events
	s.cur, s.curAcked, s.curTS = 0, 0, 0
	for _, next := range s.segs {
		if s.events == 0 || s.curTS != 0 {
			break
		}
		s.curTS = next.firstTS
	}
	if err := os.Remove(filepath.Join(s.o.dir, segmentName(seg.id))); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.o.log.Warn("audit spool: deleting a segment failed", "segment", segmentName(seg.id), "err", err)
	}
}

// window is a run of records the relay publishes together, all from one segment.
type window struct {
	seg         uint64
	start       int64 // offset of the first record: the cursor when read
	limit       int64 // durable end of the segment when read
	limitEvents int64 // records of the segment before limit
	acked       int64 // records of the segment before start
	recs        []record
	// corrupt means the bytes at start are not a record (the disk damaged them
	// after they were written): the relay gives up on the segment up to limit.
	corrupt bool
}

// spoolReader is the relay's handle on the segment it reads. Owned by one goroutine.
type spoolReader struct {
	f  *os.File
	id uint64
}

func (r *spoolReader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// readChunk is how much the relay reads at a time; a longer record is read whole.
const readChunk = 256 << 10

// next returns up to maxEvents records from the cursor, or an empty window when
// every durable record is acknowledged. It deletes the sealed segments it has
// finished. The records' data are fresh memory, not reused.
func (s *spool) next(r *spoolReader, maxEvents int) (window, error) {
	s.mu.Lock()
	for len(s.segs) > 1 && s.cur == s.segs[0].size {
		s.removeOldestLocked()
	}
	seg := s.segs[0]
	w := window{seg: seg.id, start: s.cur, limit: seg.size, limitEvents: seg.events, acked: s.curAcked}
	s.mu.Unlock()
	if w.start == w.limit {
		return w, nil
	}
	if r.f == nil || r.id != w.seg {
		r.close()
		f, err := os.Open(filepath.Join(s.o.dir, segmentName(w.seg)))
		if err != nil {
			return window{}, fmt.Errorf("open audit spool segment: %w", err)
		}
		r.f, r.id = f, w.seg
	}
	avail := w.limit - w.start
	buf := make([]byte, min(avail, readChunk))
	if _, err := r.f.ReadAt(buf, w.start); err != nil {
		return window{}, fmt.Errorf("read audit spool segment: %w", err)
	}
	off := 0
	for len(w.recs) < maxEvents && off < len(buf) {
		rec, n, err := decodeRecord(buf[off:])
		if errors.Is(err, errShortRecord) && off == 0 && len(buf) >= recordHeaderLen {
			// A record longer than a chunk: read it whole, if it ends in the durable part.
			need := int64(recordHeaderLen) + int64(binary.BigEndian.Uint32(buf))
			if need <= avail && need > int64(len(buf)) {
				buf = make([]byte, need)
				if _, err := r.f.ReadAt(buf, w.start); err != nil {
					return window{}, fmt.Errorf("read audit spool segment: %w", err)
				}
				continue
			}
		}
		if errors.Is(err, errShortRecord) && off > 0 {
			break // the rest is for the next window
		}
		if err != nil {
			w.corrupt = len(w.recs) == 0
			break
		}
		off += n
		rec.end = w.start + int64(off)
		w.recs = append(w.recs, rec)
	}
	if len(w.recs) > 0 {
		s.mu.Lock()
		if s.segs[0].id == w.seg && s.cur == w.start {
			s.curTS = w.recs[0].ts
		}
		s.mu.Unlock()
	}
	return w, nil
}

// advance moves the cursor from (seg, from) to to, past events records, and reports
// whether it did: it does not when drop_oldest deleted the segment meanwhile. nextTS
// is the append time of the record at to, 0 if unknown.
func (s *spool) advance(seg uint64, from, to, events, nextTS int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.segs[0].id != seg || s.cur != from {
		return false
	}
	s.cur = to
	s.curAcked += events
	switch {
	case s.events == s.curAcked:
		s.curTS = 0
	case nextTS != 0:
		s.curTS = nextTS
	}
	return true
}

// ack records that JetStream acknowledged the first n records of w.
func (s *spool) ack(w window, n int) {
	if n == 0 {
		return
	}
	var nextTS int64
	if n < len(w.recs) {
		nextTS = w.recs[n].ts
	}
	s.advance(w.seg, w.start, w.recs[n-1].end, int64(n), nextTS)
}

// skip gives up on the records of w from its start up to to, holding events records,
// counting them as dropped.
func (s *spool) skip(w window, to, events int64) {
	if s.advance(w.seg, w.start, to, events, 0) {
		s.o.dropped.Add(float64(events))
	}
}

// position is the cursor.
func (s *spool) position() position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return position{seg: s.segs[0].id, off: s.cur}
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

// stopAppends makes every later append fail with ErrClosed and waits until the
// events already admitted are written.
func (s *spool) stopAppends() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for s.flushing || s.open.events > 0 {
		if s.flushing {
			s.written.Wait()
			continue
		}
		s.writeLocked()
	}
}

// close closes the files and releases the directory lock; call stopAppends first.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.active.Close()
	return errors.Join(err, s.lock.Close())
}
