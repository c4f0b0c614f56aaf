// Package export writes and verifies compliance exports of a region's audit archive,
// in NDJSON or CSV. Both formats carry, per event, its seq, prev_hash, chain_hash and
// its canonical JSON exactly as archived (see package chain), and end with the chain
// head: the region's newest seq and chain hash when the export was taken, how many
// events the export holds, and the control plane's signed checkpoint of the head and
// the rows (package checkpoint). Verify needs nothing else: it works offline, and
// checks the checkpoint's signature against the public keys it is given.
//
// NDJSON, one line per event, then the head:
//
//	{"seq":41,"prev_hash":"…","chain_hash":"…","event":{"v":1,…}}
//	{"chain_head":{"region":"eu","seq":57,"hash":"…","exported_at":"…","from":"…","to":"…","client":null,"rows":17,"first_seq":41,"last_seq":57,"checkpoint":{"v":1,"region":"eu","seq":57,"chain_hash":"…","at":"…","rows_digest":"…","key_id":"ed25519:…","sig":"…"}}}
//
// CSV: a header, one record per event (the event's main fields, then prev_hash,
// chain_hash and event_json), and a last record whose first field is "# chain_head"
// and whose second is the head object as JSON. Text cells that a spreadsheet would
// run as a formula (starting with =, +, -, @, tab or CR) are prefixed with a single
// quote; event_json is never changed.
package export

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
	"github.com/portcullis-gw/portcullis/shared/audit"
)

// Format is an export format.
type Format string

// The export formats.
const (
	NDJSON Format = "ndjson"
	CSV    Format = "csv"
)

// Formats lists every format, the default first.
var Formats = []string{string(NDJSON), string(CSV)}

// ContentType is the media type of an export in f.
func (f Format) ContentType() string {
	if f == CSV {
		return "text/csv; charset=utf-8"
	}
	return "application/x-ndjson"
}

// Row is one archived event: its place in the region's chain and its canonical JSON.
type Row struct {
	Seq       int64
	PrevHash  string
	ChainHash string
	Event     []byte
}

// Head ends every export. Seq and Hash are the region's chain head (its newest event)
// when the export was read, in the same database snapshot as the rows; Rows,
// FirstSeq and LastSeq describe the rows (0 when there are none). Client is nil for an
// export of every client.
//
// What it certifies: every row's chain hash covers the row and, through prev_hash,
// every earlier event of the region. An export without a client filter is one
// unbroken piece of the chain, so its last chain hash covers all of it; when LastSeq
// equals Seq that hash is Hash. The file can be rewritten by anyone who recomputes
// the hashes: what proves it unaltered is Checkpoint, the control plane's signature
// of the head, the range, the client filter and every row's seq and chain hash
// (checked by Verify with WithPublicKeys), or a hash taken from the archive itself
// (this Hash noted when the export was made, or the chain_hash of the same seq in a
// later export).
type Head struct {
	Region     string    `json:"region"`
	Seq        int64     `json:"seq"`
	Hash       string    `json:"hash"`
	ExportedAt time.Time `json:"exported_at"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	Client     *string   `json:"client"`
	Rows       int64     `json:"rows"`
	FirstSeq   int64     `json:"first_seq"`
	LastSeq    int64     `json:"last_seq"`
	// Checkpoint is the export checkpoint, signed by the control plane; nil in an
	// export written without a signer (and in those taken before checkpoints).
	Checkpoint *checkpoint.Checkpoint `json:"checkpoint,omitempty"`
}

// csvHeadMarker is the first field of a CSV export's head record.
const csvHeadMarker = "# chain_head"

// csvColumns is the header of a CSV export.
var csvColumns = []string{
	"seq", "ts", "request_id", "region", "client_id", "tenant_id", "operation", "model", "provider",
	"deployment", "key_version", "status", "error_code", "tokens_in", "tokens_out", "cost_usd_micros",
	"latency_ms", "upstream_latency_ms", "stream", "fallback", "flagged", "prev_hash", "chain_hash", "event_json",
}

// appendRowLine appends the NDJSON line of r, without the newline.
func appendRowLine(b []byte, r Row) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, r.Seq, 10)
	b = append(b, `,"prev_hash":`...)
	b = strconv.AppendQuote(b, r.PrevHash)
	b = append(b, `,"chain_hash":`...)
	b = strconv.AppendQuote(b, r.ChainHash)
	b = append(b, `,"event":`...)
	b = append(b, r.Event...)
	return append(b, '}')
}

// csvRecord is the CSV record of r, whose event decodes to e.
func csvRecord(r Row, e audit.Event) []string {
	errorCode := ""
	if e.ErrorCode != nil {
		errorCode = *e.ErrorCode
	}
	return []string{
		strconv.FormatInt(r.Seq, 10),
		e.TS.UTC().Format(time.RFC3339Nano),
		cell(e.RequestID), cell(e.Region), cell(e.ClientID), cell(e.TenantID), cell(e.Operation),
		cell(e.Model), cell(e.Provider), cell(e.Deployment),
		strconv.Itoa(e.KeyVersion), strconv.Itoa(e.Status), cell(errorCode),
		strconv.FormatInt(e.TokensIn, 10), strconv.FormatInt(e.TokensOut, 10),
		strconv.FormatInt(e.CostUSDMicros, 10), strconv.FormatInt(e.LatencyMS, 10),
		strconv.FormatInt(e.UpstreamLatencyMS, 10),
		strconv.FormatBool(e.Stream), strconv.FormatBool(e.Fallback), strconv.FormatBool(e.Flagged),
		r.PrevHash, r.ChainHash, string(r.Event),
	}
}

// cell defuses a text cell a spreadsheet would evaluate as a formula.
func cell(s string) string {
	if s == "" {
		return s
	}
	switch s[0] {
	case '=', '+', '-', '@', '\t', '\r':
		return "'" + s
	}
	return s
}

// marshalHead is the JSON of h, the head object alone.
func marshalHead(h Head) ([]byte, error) {
	b, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode chain head: %w", err)
	}
	return b, nil
}
