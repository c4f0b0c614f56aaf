package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

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
