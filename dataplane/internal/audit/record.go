package audit

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
)

// A spool record is one event as the relay will publish it:
//
//	u32 body length | u32 CRC-32C of the body | body
//	body: i64 append time (Unix ns) | u16 len | subject | u16 len | request id | event JSON
//
// All integers are big-endian. The length and the checksum let a reader tell a whole
// record from one cut short by a crash (a torn write) or a tail of zeros.
const (
	recordHeaderLen = 8
	recordMinBody   = 8 + 2 + 2
	// maxRecordLen bounds one record, header included: NATS's default max_payload.
	// A longer length in a header can only be damage.
	maxRecordLen = 1 << 20
	// maxRequestIDLen bounds the request id, which is the Nats-Msg-Id header.
	maxRequestIDLen = 1024
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errShortRecord means the buffer ends inside a record: read more, or, at the end of
// a segment, the record is torn.
var errShortRecord = errors.New("record cut short")

// errCorruptRecord means the bytes are not a record: a bad length or checksum.
var errCorruptRecord = errors.New("corrupt record")

// record is one decoded spool record. Its data aliases the buffer it was decoded from.
type record struct {
	ts      int64 // append time, Unix ns
	subject string
	id      string
	data    []byte
	end     int64 // offset just past the record in its segment
}

// recordLen is the encoded length of a record with these fields.
func recordLen(subject, id string, data []byte) int {
	return recordHeaderLen + recordMinBody + len(subject) + len(id) + len(data)
}

// appendRecord appends the encoded record to dst. The caller has checked that
// subject and id fit in a u16 length and the whole in maxRecordLen.
func appendRecord(dst []byte, ts int64, subject, id string, data []byte) []byte {
	start := len(dst)
	bodyLen := recordMinBody + len(subject) + len(id) + len(data)
	dst = binary.BigEndian.AppendUint32(dst, uint32(bodyLen))
	dst = binary.BigEndian.AppendUint32(dst, 0) // checksum, filled in below
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(subject)))
	dst = append(dst, subject...)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(id)))
	dst = append(dst, id...)
	dst = append(dst, data...)
	body := dst[start+recordHeaderLen:]
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(body, castagnoli))
	return dst
}

// decodeRecord decodes the record at the start of buf and returns its length. It
// returns errShortRecord when buf holds only part of a record whose header is
// plausible, and errCorruptRecord when the bytes cannot be a record.
func decodeRecord(buf []byte) (record, int, error) {
	if len(buf) < recordHeaderLen {
		return record{}, 0, errShortRecord
	}
	bodyLen := int(binary.BigEndian.Uint32(buf))
	if bodyLen < recordMinBody || bodyLen > maxRecordLen-recordHeaderLen {
		return record{}, 0, errCorruptRecord
	}
	n := recordHeaderLen + bodyLen
	if len(buf) < n {
		return record{}, 0, errShortRecord
	}
	body := buf[recordHeaderLen:n]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(buf[4:]) {
		return record{}, 0, errCorruptRecord
	}
	r := record{ts: int64(binary.BigEndian.Uint64(body))}
	rest := body[8:]
	subjLen := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < subjLen+2 {
		return record{}, 0, errCorruptRecord
	}
	r.subject, rest = string(rest[:subjLen]), rest[subjLen:]
	idLen := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < idLen {
		return record{}, 0, errCorruptRecord
	}
	r.id, r.data = string(rest[:idLen]), rest[idLen:]
	return r, n, nil
}
