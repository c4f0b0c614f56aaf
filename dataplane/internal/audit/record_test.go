package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	data := []byte(`{"v":1,"request_id":"r-1"}`)
	b := appendRecord([]byte("prefix"), 42, "audit.eu.client-a", "r-1", data)
	b = b[len("prefix"):]
	if len(b) != recordLen("audit.eu.client-a", "r-1", data) {
		t.Fatalf("encoded %d bytes, recordLen says %d", len(b), recordLen("audit.eu.client-a", "r-1", data))
	}
	rec, n, err := decodeRecord(append(b, "next"...))
	if err != nil || n != len(b) {
		t.Fatalf("decode = %d, %v", n, err)
	}
	if rec.ts != 42 || rec.subject != "audit.eu.client-a" || rec.id != "r-1" || !bytes.Equal(rec.data, data) {
		t.Fatalf("decoded %+v", rec)
	}
}

func TestDecodeRecordRejectsDamage(t *testing.T) {
	good := appendRecord(nil, 1, "audit.eu.c", "r", []byte("{}"))
	flip := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 0x40
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, errShortRecord},
		{"part of the header", good[:5], errShortRecord},
		{"part of the body", good[:len(good)-1], errShortRecord},
		{"zero length", make([]byte, 64), errCorruptRecord},
		{"huge length", append([]byte{0xff, 0xff, 0xff, 0xff}, good[4:]...), errCorruptRecord},
		{"checksum", flip(5), errCorruptRecord},
		{"body", flip(len(good) - 1), errCorruptRecord},
		{"field longer than the body", func() []byte {
			b := appendRecord(nil, 1, "", "", nil)
			binary.BigEndian.PutUint16(b[recordHeaderLen+8:], 100) // subject length
			binary.BigEndian.PutUint32(b[4:], crc32.Checksum(b[recordHeaderLen:], castagnoli))
			return b
		}(), errCorruptRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := decodeRecord(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("decode = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzDecodeRecord checks that no input makes decodeRecord panic or claim more
// bytes than it was given, and that what it accepts encodes back to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, 1, "audit.eu.c", "r", []byte(`{"v":1}`)))
	f.Add(appendRecord(nil, 0, "", "", nil))
	f.Add([]byte{0, 0, 0, 12, 1, 2, 3, 4})
	f.Add(make([]byte, 32))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, n, err := decodeRecord(b)
		if err != nil {
			return
		}
		if n > len(b) || n < recordHeaderLen+recordMinBody {
			t.Fatalf("decoded length %d of %d bytes", n, len(b))
		}
		if again := appendRecord(nil, rec.ts, rec.subject, rec.id, rec.data); !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", again, b[:n])
		}
	})
}
