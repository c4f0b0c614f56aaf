package export

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// maxLine bounds one line of an export (an event is a few kilobytes at most).
const maxLine = 4 << 20

// tailSize is how much of the end of a file is read to find the head.
const tailSize = 64 << 10

// Error is the first problem Verify found, on a 1-based line of the file.
type Error struct {
	Line   int
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// Summary describes an export that verified.
type Summary struct {
	Format Format
	Head   Head
	// Linked is true for an export without a client filter: its rows are one
	// unbroken piece of the chain, each prev_hash the previous row's chain hash.
	Linked bool
	// ReachesHead is true when the last row is the region's head at export time, so
	// the file's last chain hash is the head's hash.
	ReachesHead bool
	// OutsideRange counts rows whose ts is outside [from, to): events that reached
	// the archive late (replayed from a data plane's spool, say) between two events
	// of the range, which an unbroken piece of the chain has to include.
	OutsideRange int64
	// Checkpoint is the head's signed checkpoint (Head.Checkpoint), nil when the
	// export has none. When set, it matches the head and the rows.
	Checkpoint *checkpoint.Checkpoint
	// SignatureChecked is true when the checkpoint's signature was checked, and
	// verified, with the public keys of WithPublicKeys. Without them it is false and
	// the file could have been rewritten with its checkpoint.
	SignatureChecked bool
}

// VerifyOption changes what Verify requires.
type VerifyOption func(*verifyOptions)

type verifyOptions struct {
	keys *signing.Verifier
}

// WithPublicKeys makes Verify require the head's signed checkpoint and check its
// signature against keys: an export rewritten and re-hashed after it was signed,
// or signed by another key, then fails.
func WithPublicKeys(keys *signing.Verifier) VerifyOption {
	return func(o *verifyOptions) { o.keys = keys }
}

// Verify checks an export written by Writer, NDJSON or CSV (told apart by the first
// byte), reading r once from the end (the head) and once from the start:
//   - every row's chain_hash is SHA-256(prev_hash || event): an edited row fails;
//   - seqs go up; without a client filter each row's seq is the previous one's plus
//     one and its prev_hash the previous row's chain hash (the genesis hash for seq
//     1): a removed, added or swapped row fails;
//   - every event is of the head's region, and of its client when it names one; the
//     first and last events (every event, with a client filter) are in the range;
//   - the head's row count and first and last seqs match the rows, and when the last
//     row is the head its chain hash is the head's hash;
//   - in CSV, every column agrees with event_json;
//   - a checkpoint in the head is of the head (region, seq, hash and exported_at)
//     and of the rows (its rows_digest); with WithPublicKeys there must be one,
//     signed by one of the keys over the head, the range, the client and the rows.
//
// It returns the first problem as an *Error naming its line.
func Verify(r io.ReadSeeker, opts ...VerifyOption) (Summary, error) {
	var o verifyOptions
	for _, opt := range opts {
		opt(&o)
	}
	tail, err := lastLine(r)
	if err != nil {
		return Summary{}, err
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return Summary{}, fmt.Errorf("read export: %w", err)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	first, err := br.Peek(1)
	if errors.Is(err, io.EOF) {
		return Summary{}, &Error{Line: 1, Reason: "the file is empty: no rows and no chain head"}
	}
	if err != nil {
		return Summary{}, fmt.Errorf("read export: %w", err)
	}
	if first[0] == '{' {
		return verifyNDJSON(br, tail, o)
	}
	return verifyCSV(br, tail, o)
}

// lastLine returns the last non-empty line of r, without its line ending.
func lastLine(r io.ReadSeeker) ([]byte, error) {
	size, err := r.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("read export: %w", err)
	}
	n := min(size, tailSize)
	if _, err := r.Seek(size-n, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read export: %w", err)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read export: %w", err)
	}
	buf = bytes.TrimRight(buf, "\r\n")
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[i+1:]
	}
	return bytes.TrimRight(buf, "\r"), nil
}

// checker holds what Verify knows of the rows read so far.
type checker struct {
	head   Head
	linked bool
	keys   *signing.Verifier  // nil: the checkpoint's signature is not checked
	digest *checkpoint.Digest // of the rows read

	rows         int64
	firstSeq     int64
	lastSeq      int64
	lastHash     string
	lastLine     int
	lastTS       time.Time
	outsideRange int64
}

func newChecker(h Head, o verifyOptions) *checker {
	return &checker{head: h, linked: h.Client == nil, keys: o.keys, digest: checkpoint.NewDigest()}
}

// inRange reports whether t is in [from, to).
func (c *checker) inRange(t time.Time) bool { return !t.Before(c.head.From) && t.Before(c.head.To) }

// row checks one row at line and returns its event.
func (c *checker) row(line int, r Row) (audit.Event, error) {
	fail := func(format string, args ...any) (audit.Event, error) {
		return audit.Event{}, &Error{Line: line, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case r.Seq < 1:
		return fail("seq %d: seqs start at 1", r.Seq)
	case !chain.ValidHash(r.PrevHash):
		return fail("prev_hash is not a 64-character lowercase hex hash")
	case !chain.ValidHash(r.ChainHash):
		return fail("chain_hash is not a 64-character lowercase hex hash")
	case chain.Link(r.PrevHash, r.Event) != r.ChainHash:
		return fail("chain_hash does not match prev_hash and the event: the line was edited")
	}
	e, err := audit.Decode(r.Event)
	if err != nil {
		return fail("the event does not decode: %v", err)
	}
	if e.Region != c.head.Region {
		return fail("an event of region %q in an export of region %q", e.Region, c.head.Region)
	}
	if c.rows > 0 && r.Seq <= c.lastSeq {
		return fail("seq %d after seq %d: lines are out of order", r.Seq, c.lastSeq)
	}
	if c.linked {
		switch {
		case c.rows > 0 && r.Seq != c.lastSeq+1:
			return fail("seq %d after seq %d: a line is missing (an export without a client filter has every seq)", r.Seq, c.lastSeq)
		case c.rows > 0 && r.PrevHash != c.lastHash:
			return fail("prev_hash is not line %d's chain_hash: a line was removed, added or moved", c.lastLine)
		case r.Seq == 1 && r.PrevHash != chain.Genesis(c.head.Region):
			return fail("seq 1 does not start from the genesis hash of region %q", c.head.Region)
		case c.rows == 0 && !c.inRange(e.TS):
			return fail("the first event (ts %s) is outside the export's range: lines were removed before it", e.TS.UTC().Format(time.RFC3339Nano))
		}
	} else {
		switch {
		case e.ClientID != *c.head.Client:
			return fail("an event of client %q in an export of client %q", e.ClientID, *c.head.Client)
		case !c.inRange(e.TS):
			return fail("event ts %s is outside the export's range", e.TS.UTC().Format(time.RFC3339Nano))
		}
	}
	if !c.inRange(e.TS) {
		c.outsideRange++
	}
	if c.rows == 0 {
		c.firstSeq = r.Seq
	}
	c.rows++
	c.lastSeq, c.lastHash, c.lastLine, c.lastTS = r.Seq, r.ChainHash, line, e.TS
	c.digest.Add(r.Seq, r.ChainHash)
	return e, nil
}

// finish checks the head, met at line, against the rows.
func (c *checker) finish(line int, format Format) (Summary, error) {
	fail := func(format string, args ...any) (Summary, error) {
		return Summary{}, &Error{Line: line, Reason: fmt.Sprintf(format, args...)}
	}
	h := c.head
	if c.linked && c.rows > 0 && !c.inRange(c.lastTS) {
		return Summary{}, &Error{Line: c.lastLine, Reason: fmt.Sprintf(
			"the last event (ts %s) is outside the export's range: lines were removed after it", c.lastTS.UTC().Format(time.RFC3339Nano))}
	}
	if h.Rows != c.rows || h.FirstSeq != c.firstSeq || h.LastSeq != c.lastSeq {
		return fail("the chain head counts %d events (seq %d to %d) but the file holds %d (seq %d to %d): lines were removed or added",
			h.Rows, h.FirstSeq, h.LastSeq, c.rows, c.firstSeq, c.lastSeq)
	}
	if h.LastSeq > h.Seq {
		return fail("the last event's seq %d is past the chain head's seq %d", h.LastSeq, h.Seq)
	}
	if c.rows > 0 && c.lastSeq == h.Seq && c.lastHash != h.Hash {
		return fail("the last event is the chain head (seq %d) but its chain_hash is not the head's hash", h.Seq)
	}
	if h.Seq == 0 && h.Hash != chain.Genesis(h.Region) {
		return fail("an empty chain's head must be the genesis hash of region %q", h.Region)
	}
	if reason := c.checkCheckpoint(); reason != "" {
		return fail("%s", reason)
	}
	return Summary{Format: format, Head: h, Linked: c.linked, ReachesHead: c.rows > 0 && c.lastSeq == h.Seq,
		OutsideRange: c.outsideRange, Checkpoint: h.Checkpoint, SignatureChecked: h.Checkpoint != nil && c.keys != nil}, nil
}

// checkCheckpoint checks the head's checkpoint against the head and the rows read,
// and its signature when the checker has keys, returning what is wrong or "".
func (c *checker) checkCheckpoint() string {
	h, cp := c.head, c.head.Checkpoint
	if cp == nil {
		if c.keys != nil {
			return "the chain head has no signed checkpoint: the export was not signed by the control plane " +
				"(or taken before checkpoints existed), or its checkpoint was removed"
		}
		return ""
	}
	if reason := cp.Check(); reason != "" {
		return "the checkpoint is malformed: " + reason
	}
	switch {
	case !cp.IsExport():
		return "the checkpoint is a chain checkpoint, not an export's: it does not cover the rows"
	case cp.Region != h.Region || cp.Seq != h.Seq || cp.ChainHash != h.Hash:
		return fmt.Sprintf("the checkpoint is of region %q at seq %d, hash %s, not of the chain head: the head was edited",
			cp.Region, cp.Seq, cp.ChainHash)
	case !cp.At.Equal(h.ExportedAt):
		return "the checkpoint's time is not the export's exported_at: the head was edited"
	case cp.RowsDigest != c.digest.Sum():
		return "the rows are not the ones the checkpoint covers (rows_digest differs): events were rewritten, added or removed and the chain recomputed"
	}
	if c.keys == nil {
		return ""
	}
	err := cp.VerifyExport(c.keys, ExportScope(h, c.digest.Sum()))
	switch {
	case errors.Is(err, signing.ErrUnknownKey):
		return fmt.Sprintf("the checkpoint is signed with key %s, which is not among the public keys given (%s): "+
			"it was signed by someone else, or pass the control plane's audit public key", cp.KeyID, strings.Join(c.keyIDs(), ", "))
	case errors.Is(err, signing.ErrBadSignature):
		return fmt.Sprintf("the checkpoint's signature does not verify with key %s: the file was rewritten after the control plane signed it", cp.KeyID)
	case err != nil:
		return "the checkpoint does not verify: " + err.Error()
	}
	return ""
}

// keyIDs lists the ids of the checker's keys, sorted.
func (c *checker) keyIDs() []string {
	ids := c.keys.KeyIDs()
	slices.Sort(ids)
	return ids
}

// checkHead validates a decoded head, returning what is wrong with it or "".
func checkHead(h Head) string {
	switch {
	case h.Region == "":
		return "a chain head naming no region"
	case !chain.ValidHash(h.Hash):
		return "a chain head whose hash is not 64 lowercase hex characters"
	case h.Seq < 0 || h.Rows < 0:
		return "a chain head with a negative seq or row count"
	case !h.From.Before(h.To):
		return "a chain head with an empty range (from is not before to)"
	}
	return ""
}

// parseHead decodes the JSON of a head object (exactly as Writer writes it).
func parseHead(data []byte) (Head, string) {
	var h Head
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil || dec.More() {
		return Head{}, "not a chain head"
	}
	if again, err := marshalHead(h); err != nil || !bytes.Equal(again, data) {
		return Head{}, "a chain head that is not as exported"
	}
	if reason := checkHead(h); reason != "" {
		return Head{}, reason
	}
	return h, ""
}

// noHead is the error of a file whose last line, line, is no usable chain head.
func noHead(why string, line int) error {
	return &Error{Line: line, Reason: fmt.Sprintf(
		"the last line is %s: the file was cut short, or its chain head removed or edited", why)}
}

// countLines returns the number of the last non-empty line sc reads.
func countLines(sc *bufio.Scanner) int {
	line, last := 0, 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			last = line
		}
	}
	return max(last, 1)
}

var ndjsonHeadPrefix = []byte(`{"chain_head":`)

// ParseHead reads the head from the last line of an export, NDJSON or CSV. It fails
// unless the line is a usable chain head exactly as Writer writes it.
func ParseHead(line []byte) (Head, error) {
	line = bytes.TrimRight(line, "\r\n")
	var h Head
	why := "not a chain head"
	switch {
	case bytes.HasPrefix(line, ndjsonHeadPrefix) && bytes.HasSuffix(line, []byte("}")):
		h, why = parseHead(line[len(ndjsonHeadPrefix) : len(line)-1])
	case bytes.HasPrefix(line, []byte(csvHeadMarker+",")):
		if rec, err := csv.NewReader(bytes.NewReader(line)).Read(); err == nil && len(rec) == 2 {
			h, why = parseHead([]byte(rec[1]))
		}
	}
	if why != "" {
		return Head{}, errors.New(why)
	}
	return h, nil
}

// verifyNDJSON checks an NDJSON export whose last line is tail.
func verifyNDJSON(r io.Reader, tail []byte, o verifyOptions) (Summary, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	h, err := ParseHead(tail)
	if err != nil {
		return Summary{}, noHead(err.Error(), countLines(sc))
	}
	c := newChecker(h, o)
	line := 0
	headLine := 0
	var buf []byte
	for sc.Scan() {
		line++
		text := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		if headLine != 0 {
			if len(bytes.TrimSpace(text)) == 0 {
				continue
			}
			return Summary{}, &Error{Line: line, Reason: "a line after the chain head"}
		}
		if bytes.HasPrefix(text, ndjsonHeadPrefix) {
			if !bytes.Equal(text, tail) {
				return Summary{}, &Error{Line: line, Reason: "a chain head that is not the last line"}
			}
			headLine = line
			continue
		}
		row, ok := parseRowLine(text)
		if !ok {
			return Summary{}, &Error{Line: line, Reason: "not an export row (seq, prev_hash, chain_hash, event)"}
		}
		if buf = appendRowLine(buf[:0], row); !bytes.Equal(buf, text) {
			return Summary{}, &Error{Line: line, Reason: "the line is not as exported (fields added, removed or reformatted)"}
		}
		if _, err := c.row(line, row); err != nil {
			return Summary{}, err
		}
	}
	if err := sc.Err(); err != nil {
		return Summary{}, &Error{Line: line + 1, Reason: fmt.Sprintf("unreadable: %v", err)}
	}
	if headLine == 0 {
		return Summary{}, &Error{Line: line + 1, Reason: "no chain head at the end: the file was cut short"}
	}
	return c.finish(headLine, NDJSON)
}

// parseRowLine decodes an NDJSON row line, keeping the event's bytes as they are.
func parseRowLine(text []byte) (Row, bool) {
	var v struct {
		Seq       *int64          `json:"seq"`
		PrevHash  *string         `json:"prev_hash"`
		ChainHash *string         `json:"chain_hash"`
		Event     json.RawMessage `json:"event"`
	}
	if err := json.Unmarshal(text, &v); err != nil || v.Seq == nil || v.PrevHash == nil || v.ChainHash == nil || len(v.Event) == 0 {
		return Row{}, false
	}
	return Row{Seq: *v.Seq, PrevHash: *v.PrevHash, ChainHash: *v.ChainHash, Event: v.Event}, true
}

// verifyCSV checks a CSV export whose last line is tail.
func verifyCSV(r io.Reader, tail []byte, o verifyOptions) (Summary, error) {
	h, err := ParseHead(tail)
	if err != nil {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), maxLine)
		return Summary{}, noHead(err.Error(), countLines(sc))
	}
	c := newChecker(h, o)
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil || !slices.Equal(header, csvColumns) {
		return Summary{}, &Error{Line: 1, Reason: "not an audit export: the first line is neither JSON nor the CSV header"}
	}
	headLine := 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			line := 0
			if pe, ok := errors.AsType[*csv.ParseError](err); ok {
				line = pe.StartLine
			}
			return Summary{}, &Error{Line: line, Reason: fmt.Sprintf("not valid CSV: %v", err)}
		}
		line, _ := cr.FieldPos(0)
		if headLine != 0 {
			return Summary{}, &Error{Line: line, Reason: "a record after the chain head"}
		}
		if len(rec) > 0 && rec[0] == csvHeadMarker {
			headLine = line
			continue
		}
		if err := c.csvRow(line, rec); err != nil {
			return Summary{}, err
		}
	}
	if headLine == 0 {
		line, _ := cr.FieldPos(0)
		return Summary{}, &Error{Line: line + 1, Reason: "no chain head at the end: the file was cut short"}
	}
	return c.finish(headLine, CSV)
}

// csvRow checks one CSV record: its chain, and every column against event_json.
func (c *checker) csvRow(line int, rec []string) error {
	if len(rec) != len(csvColumns) {
		return &Error{Line: line, Reason: fmt.Sprintf("%d fields, want %d", len(rec), len(csvColumns))}
	}
	col := func(name string) string { return rec[slices.Index(csvColumns, name)] }
	seq, err := strconv.ParseInt(col("seq"), 10, 64)
	if err != nil {
		return &Error{Line: line, Reason: "seq is not a number"}
	}
	row := Row{Seq: seq, PrevHash: col("prev_hash"), ChainHash: col("chain_hash"), Event: []byte(col("event_json"))}
	e, err := c.row(line, row)
	if err != nil {
		return err
	}
	want := csvRecord(row, e)
	for i, name := range csvColumns {
		if rec[i] != want[i] {
			return &Error{Line: line, Reason: fmt.Sprintf("column %s is %q but event_json says %q: the line was edited", name, rec[i], want[i])}
		}
	}
	return nil
}
