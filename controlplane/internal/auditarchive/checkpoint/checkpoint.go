// Package checkpoint signs and checks the audit archive's checkpoints: the control
// plane's Ed25519 signature (package shared/signing) of the fact that a region's hash
// chain (package chain) had a given chain hash at a given seq. The chain alone can be
// rewritten and recomputed by anyone with write access to the archive or an export;
// a checkpoint signed before the rewrite cannot be, without the control plane's
// private key.
//
// There are two kinds, each signing its own domain-separated message (the lines
// joined with "\n", no newline at the end; seq in decimal; times in RFC 3339 with up
// to nine fractional digits, in UTC with "Z", as time.RFC3339Nano writes them):
//
// A chain checkpoint, signed every audit-checkpoint-interval, kept in Postgres and
// published on NATS:
//
//	portcullis-audit-checkpoint-v1
//	<region>
//	<seq>
//	<chain_hash>
//	<at>
//
// An export checkpoint, in the chain head of every export: the region's chain head
// when the export was read (at is then the export's exported_at), and what the
// export holds, so that no row, range or filter of a signed export can be changed:
//
//	portcullis-audit-export-v1
//	<region>
//	<seq>
//	<chain_hash>
//	<at>
//	<from>
//	<to>
//	<client>          empty for an export of every client
//	<rows_digest>
//
// rows_digest is hex(SHA-256) over "<seq> <chain_hash>\n" of every row of the
// export, in order (the SHA-256 of nothing for an export without rows). A row's
// chain hash covers its prev_hash and its event, so the digest covers every byte of
// every row that verify checks.
//
// Every function is pure and safe for concurrent use.
package checkpoint

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// Version is the schema version of a Checkpoint ("v").
const Version = 1

// The first line of each kind's signed message.
const (
	ChainDomain  = "portcullis-audit-checkpoint-v1"
	ExportDomain = "portcullis-audit-export-v1"
)

// Precision is the precision of a checkpoint's time: Postgres keeps microseconds, so
// a checkpoint read back from the archive signs the same message.
const Precision = time.Microsecond

// Checkpoint is a signed checkpoint, as JSON:
//
//	{"v":1,"region":"eu","seq":57,"chain_hash":"…","at":"2026-04-14T20:05:00.123456Z","key_id":"ed25519:…","sig":"<base64>"}
//
// with "rows_digest" before "key_id" in an export checkpoint.
type Checkpoint struct {
	V         int       `json:"v"`
	Region    string    `json:"region"`
	Seq       int64     `json:"seq"`
	ChainHash string    `json:"chain_hash"`
	At        time.Time `json:"at"`
	// RowsDigest is set in an export checkpoint only (see the package comment).
	RowsDigest string `json:"rows_digest,omitempty"`
	KeyID      string `json:"key_id"`
	// Sig is the Ed25519 signature of the message, standard base64 in JSON.
	Sig []byte `json:"sig"`
}

// Export is what an export checkpoint signs beyond the chain head.
type Export struct {
	From, To time.Time
	Client   string // "" for an export of every client
	// RowsDigest is the Digest of the export's rows.
	RowsDigest string
}

// ChainMessage is the message a chain checkpoint of region at seq signs.
func ChainMessage(region string, seq int64, chainHash string, at time.Time) []byte {
	return []byte(strings.Join([]string{ChainDomain, region, strconv.FormatInt(seq, 10), chainHash, formatTime(at)}, "\n"))
}

// ExportMessage is the message the checkpoint of an export signs: the region's chain
// head (seq and chainHash) when the export was read at at, and e.
func ExportMessage(region string, seq int64, chainHash string, at time.Time, e Export) []byte {
	return []byte(strings.Join([]string{ExportDomain, region, strconv.FormatInt(seq, 10), chainHash, formatTime(at),
		formatTime(e.From), formatTime(e.To), e.Client, e.RowsDigest}, "\n"))
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Sign returns the chain checkpoint of region at seq, whose chain hash is chainHash,
// as of at (cut to Precision), signed by s.
func Sign(s *signing.Signer, region string, seq int64, chainHash string, at time.Time) Checkpoint {
	at = at.UTC().Truncate(Precision)
	return Checkpoint{V: Version, Region: region, Seq: seq, ChainHash: chainHash, At: at, KeyID: s.KeyID(),
		Sig: s.Sign(ChainMessage(region, seq, chainHash, at))}
}

// SignExport returns the checkpoint of an export of region taken at at (cut to
// Precision), when the region's chain head was seq and chainHash, signed by s.
func SignExport(s *signing.Signer, region string, seq int64, chainHash string, at time.Time, e Export) Checkpoint {
	at = at.UTC().Truncate(Precision)
	return Checkpoint{V: Version, Region: region, Seq: seq, ChainHash: chainHash, At: at, RowsDigest: e.RowsDigest,
		KeyID: s.KeyID(), Sig: s.Sign(ExportMessage(region, seq, chainHash, at, e))}
}

// IsExport reports whether c is an export checkpoint.
func (c Checkpoint) IsExport() bool { return c.RowsDigest != "" }

// Check reports what is wrong with c's fields, or "" when they are well formed. It
// checks no signature.
func (c Checkpoint) Check() string {
	switch {
	case c.V != Version:
		return fmt.Sprintf("schema version %d, not %d", c.V, Version)
	case c.Region == "" || strings.ContainsAny(c.Region, "\r\n"):
		return "no region, or one with a line break"
	case c.Seq < 0:
		return "a negative seq"
	case !chain.ValidHash(c.ChainHash):
		return "a chain_hash that is not 64 lowercase hex characters"
	case c.At.IsZero():
		return "no time"
	case c.RowsDigest != "" && !chain.ValidHash(c.RowsDigest):
		return "a rows_digest that is not 64 lowercase hex characters"
	case c.KeyID == "":
		return "no key_id"
	case len(c.Sig) != ed25519.SignatureSize:
		return fmt.Sprintf("a signature of %d bytes, not %d", len(c.Sig), ed25519.SignatureSize)
	}
	return ""
}

// Verify checks chain checkpoint c: its fields, and its signature by one of v's keys.
// An unknown key wraps signing.ErrUnknownKey, a signature that does not match
// signing.ErrBadSignature.
func (c Checkpoint) Verify(v *signing.Verifier) error {
	if reason := c.Check(); reason != "" {
		return errors.New("malformed checkpoint: " + reason)
	}
	if c.IsExport() {
		return errors.New("an export checkpoint, not a chain checkpoint")
	}
	return v.Verify(c.KeyID, ChainMessage(c.Region, c.Seq, c.ChainHash, c.At), c.Sig)
}

// VerifyExport checks export checkpoint c, of an export whose range, client and rows
// are e: its fields, and its signature by one of v's keys. Errors are as Verify's.
func (c Checkpoint) VerifyExport(v *signing.Verifier, e Export) error {
	if reason := c.Check(); reason != "" {
		return errors.New("malformed checkpoint: " + reason)
	}
	switch {
	case !c.IsExport():
		return errors.New("a chain checkpoint, not an export checkpoint")
	case strings.ContainsAny(e.Client, "\r\n"):
		return errors.New("a client with a line break")
	}
	return v.Verify(c.KeyID, ExportMessage(c.Region, c.Seq, c.ChainHash, c.At, e), c.Sig)
}

// Encode is the JSON of c, as published on NATS.
func Encode(c Checkpoint) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode audit checkpoint: %w", err)
	}
	return b, nil
}

// Decode parses a checkpoint's JSON and checks its fields (not its signature). It
// refuses unknown fields and schema versions.
func Decode(data []byte) (Checkpoint, error) {
	var c Checkpoint
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Checkpoint{}, fmt.Errorf("decode audit checkpoint: %w", err)
	}
	if dec.More() {
		return Checkpoint{}, errors.New("decode audit checkpoint: data after the object")
	}
	if reason := c.Check(); reason != "" {
		return Checkpoint{}, errors.New("decode audit checkpoint: " + reason)
	}
	return c, nil
}

// Digest computes the rows_digest of an export's rows. Its zero value is not ready;
// use NewDigest. It is not safe for concurrent use.
type Digest struct {
	h   hash.Hash
	buf []byte
}

// NewDigest returns the digest of no rows.
func NewDigest() *Digest { return &Digest{h: sha256.New()} }

// Add adds the row at seq, whose chain hash is chainHash.
func (d *Digest) Add(seq int64, chainHash string) {
	d.buf = strconv.AppendInt(d.buf[:0], seq, 10)
	d.buf = append(d.buf, ' ')
	d.buf = append(d.buf, chainHash...)
	d.buf = append(d.buf, '\n')
	d.h.Write(d.buf)
}

// Sum is the hex digest of the rows added so far.
func (d *Digest) Sum() string { return hex.EncodeToString(d.h.Sum(nil)) }
