// Package chain defines the hash chain of a region's audit archive: the canonical
// bytes of an archived event, the genesis hash a region's chain starts from, and how
// each event's chain hash covers its own bytes and the previous chain hash.
//
// For event n of a region (n = 1, 2, 3, …, without gaps):
//
//	chain_hash(n) = hex(SHA-256(chain_hash(n-1) || event(n)))
//
// where chain_hash(n-1) is its 64 lowercase hex characters (not the raw 32 bytes),
// event(n) is the event's canonical JSON, and chain_hash(0) is Genesis(region). With
// hex on both sides a row can be re-checked by hand:
//
//	printf '%s%s' "$prev_hash" "$event_json" | sha256sum
//
// Every function is pure and safe for concurrent use.
package chain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/portcullis-gw/portcullis/shared/audit"
)

// HashLen is the length of a chain hash: 64 lowercase hex characters.
const HashLen = 2 * sha256.Size

// genesisPrefix starts the text whose hash begins each region's chain.
const genesisPrefix = "portcullis-audit:"

// Genesis is the "previous hash" of region's first event:
// hex(SHA-256("portcullis-audit:<region>")). Binding it to the region means a chain
// archived for one region cannot pass as another region's.
func Genesis(region string) string {
	sum := sha256.Sum256([]byte(genesisPrefix + region))
	return hex.EncodeToString(sum[:])
}

// Link is the chain hash of an event whose canonical JSON is event and whose
// predecessor's chain hash is prev.
func Link(prev string, event []byte) string {
	h := sha256.New()
	h.Write([]byte(prev))
	h.Write(event)
	return hex.EncodeToString(h.Sum(nil))
}

// Canonical is the archived form of e: its JSON as audit.Encode writes it, with the
// timestamp in UTC. Fields the schema does not know are not part of it. Equal events
// give equal bytes (map keys are sorted), so the same event archived twice would
// hash the same way.
func Canonical(e audit.Event) ([]byte, error) {
	e.TS = e.TS.UTC()
	b, err := audit.Encode(e)
	if err != nil {
		return nil, fmt.Errorf("encode audit event: %w", err)
	}
	return b, nil
}

// ValidHash reports whether s looks like a chain hash: 64 lowercase hex characters.
func ValidHash(s string) bool {
	if len(s) != HashLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
