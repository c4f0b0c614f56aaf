package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// maxSpareBytes bounds the write buffer the spool keeps between batches.
const maxSpareBytes = 4 << 20

// batch is the records appended while the previous batch was being written: the
// unit of group commit.
type batch struct {
	buf     []byte
	events  int64
	firstTS int64
	done    bool
	err     error
}

// append makes recs, which hold events whole records, durable: it returns nil only
// once they are written and fsync'd. It returns ErrSpoolFull when the spool has no
// room for them all (after dropping the oldest segments, under drop_oldest), and
// ErrClosed after close.
func (s *spool) append(recs []byte, events, ts int64) error {
	n := int64(len(recs))
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
	b.buf = append(b.buf, recs...)
	b.events += events
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
