package publisher

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// storedVersion reads only the version of an encoded snapshot. It deliberately does
// not reject a schema version this build does not know: a newer replica's snapshot
// still carries a comparable version, and overwriting it with an older policy would
// break monotonicity. ok is false when data is not an encoded snapshot at all.
func storedVersion(data []byte) (version int64, ok bool) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return 0, false
	}
	var head struct {
		SchemaVersion int   `json:"schema_version"`
		Version       int64 `json:"version"`
	}
	dec := json.NewDecoder(io.LimitReader(zr, policy.MaxDecodedSize))
	if err := dec.Decode(&head); err != nil {
		return 0, false
	}
	if head.SchemaVersion <= 0 || head.Version <= 0 {
		return 0, false
	}
	return head.Version, true
}
