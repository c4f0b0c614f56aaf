// Package changelog defines the records of the admin change history and their hash
// chain: every admin write is one Record, numbered from 1 without gaps, and
//
//	hash(n) = hex(SHA-256(hash(n-1) || canonical(n)))
//
// where canonical(n) is the record's JSON without its hashes (Record.Canonical) and
// hash(0) is Genesis. It holds no database code, so that the CLI verifies an export
// with the same code the control plane writes it with. Every function is pure and
// safe for concurrent use.
package changelog

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Genesis is the prev_hash of change 1: hex(SHA-256("portcullis-changes")).
var Genesis = func() string {
	sum := sha256.Sum256([]byte("portcullis-changes"))
	return hex.EncodeToString(sum[:])
}()

// Record is one row of the change history.
type Record struct {
	Seq           int64           `json:"seq"`
	At            time.Time       `json:"at"`
	Principal     string          `json:"principal"`
	PrincipalKind string          `json:"principal_kind"`
	Roles         string          `json:"roles"`
	Credential    string          `json:"credential"`
	Source        string          `json:"source"`
	RequestID     string          `json:"request_id"`
	Action        string          `json:"action"`
	Resource      string          `json:"resource"`
	Key           string          `json:"key"`
	Before        json.RawMessage `json:"before"`
	After         json.RawMessage `json:"after"`
	PolicyVersion *int64          `json:"policy_version"`
	PrevHash      string          `json:"prev_hash,omitempty"` // empty only in Canonical
	Hash          string          `json:"hash,omitempty"`
}

// Canonical is the bytes the record's hash covers: its JSON without the two hashes,
// with the time in UTC at microsecond precision (RFC 3339, trailing zeros dropped)
// and before and after as stored (null when absent).
func (r Record) Canonical() []byte {
	r.PrevHash, r.Hash = "", ""
	r.At = r.At.UTC().Truncate(time.Microsecond)
	r.Before, r.After = orNull(r.Before), orNull(r.After)
	b, _ := json.Marshal(r) // strings, numbers, a time and JSON the database gave back always marshal
	return b
}

func orNull(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return b
}

// Link is the hash of a record whose canonical form is canonical and whose
// predecessor's hash is prev: hex(SHA-256(prev || canonical)).
func Link(prev string, canonical []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil))
}

// Verifier checks records one at a time, in order, for an unbroken chain. The zero
// value expects the history to start at change 1; a filtered or partial export
// starting later is checked from its first record on. It is not safe for concurrent
// use.
type Verifier struct {
	prev  *Record
	count int64
}

// Next checks r against the record before it: consecutive seq, prev_hash equal to
// that record's hash (Genesis before change 1), and r's hash equal to its content's.
func (v *Verifier) Next(r Record) error {
	switch {
	case v.prev != nil && r.Seq != v.prev.Seq+1:
		return fmt.Errorf("change %d follows change %d: the history has a gap", r.Seq, v.prev.Seq)
	case v.prev != nil && r.PrevHash != v.prev.Hash:
		return fmt.Errorf("change %d: prev_hash does not match change %d's hash", r.Seq, v.prev.Seq)
	case v.prev == nil && r.Seq == 1 && r.PrevHash != Genesis:
		return fmt.Errorf("change 1: prev_hash is not the genesis hash")
	case Link(r.PrevHash, r.Canonical()) != r.Hash:
		return fmt.Errorf("change %d: its content does not match its hash (the row was altered)", r.Seq)
	}
	v.prev = &r
	v.count++
	return nil
}

// Count is how many records passed Next.
func (v *Verifier) Count() int64 { return v.count }

// Head is the last record that passed Next, nil before the first.
func (v *Verifier) Head() *Record { return v.prev }

// Verify checks records, in order, with a Verifier, and returns how many passed.
func Verify(records []Record) (int, error) {
	var v Verifier
	for i, r := range records {
		if err := v.Next(r); err != nil {
			return i, err
		}
	}
	return len(records), nil
}
