package audit

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

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
