package audit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// The cursor file holds the position up to which JetStream has acknowledged the
// spool: u64 segment id | u64 offset | u32 CRC-32C of the 16 bytes before it.
//
// It is only ever behind the truth, never ahead: it is written after the acks it
// records. A lost, stale or damaged cursor makes the relay publish some events again,
// which JetStream drops as duplicates within the stream's duplicate window and the
// control plane's idempotent ingest drops after it. It is replaced atomically (write,
// fsync, rename).
const (
	cursorFile    = "cursor"
	cursorTmpFile = "cursor.tmp"
	cursorLen     = 8 + 8 + 4
)

// position is a place in the spool: an offset in a segment.
type position struct {
	seg uint64
	off int64
}

// readCursor returns the saved position, or false when there is none or it is
// damaged.
func readCursor(dir string) (position, bool) {
	b, err := os.ReadFile(filepath.Join(dir, cursorFile))
	if err != nil || len(b) != cursorLen {
		return position{}, false
	}
	if crc32.Checksum(b[:16], castagnoli) != binary.BigEndian.Uint32(b[16:]) {
		return position{}, false
	}
	p := position{seg: binary.BigEndian.Uint64(b), off: int64(binary.BigEndian.Uint64(b[8:]))}
	if p.off < 0 {
		return position{}, false
	}
	return p, true
}

// writeCursor saves p.
func writeCursor(dir string, p position) error {
	b := make([]byte, 0, cursorLen)
	b = binary.BigEndian.AppendUint64(b, p.seg)
	b = binary.BigEndian.AppendUint64(b, uint64(p.off))
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	tmp := filepath.Join(dir, cursorTmpFile)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save spool cursor: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, cursorFile))
	}
	if err != nil {
		return fmt.Errorf("save spool cursor: %w", err)
	}
	return nil
}
