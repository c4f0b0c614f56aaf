package changelog

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestHashesMatchSha256sum pins the chain to values computed with coreutils:
//
//	printf '%s' 'portcullis-changes' | sha256sum
//	printf '%s%s' "$genesis" '{"seq":1}' | sha256sum
func TestHashesMatchSha256sum(t *testing.T) {
	if Genesis != "7d5141f77864c827902f170180df3aab52570dcf7d0deb76a298a225ab2c2d1b" {
		t.Fatalf("genesis %s", Genesis)
	}
	if got := Link(Genesis, []byte(`{"seq":1}`)); got != "6fe110766ce693a5ea6b28dd9de5118c0321bf95b1b56517cc0d9da894a5a558" {
		t.Fatalf("link %s", got)
	}
}

func chain(n int) []Record {
	var out []Record
	prev := Genesis
	for i := 1; i <= n; i++ {
		r := Record{Seq: int64(i), At: time.Date(2026, 12, 7, 5, 0, i, 1500, time.FixedZone("X", 3600)), Principal: "ops",
			Action: "update", Resource: "tiers", Key: "default", After: json.RawMessage(`{"requests_per_minute":90}`), PrevHash: prev}
		r.Hash = Link(prev, r.Canonical())
		prev = r.Hash
		out = append(out, r)
	}
	return out
}

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		mutate func([]Record) []Record
		want   string // "" for a valid chain
	}{
		{"intact", func(r []Record) []Record { return r }, ""},
		{"a later part alone", func(r []Record) []Record { return r[2:] }, ""},
		{"altered content", func(r []Record) []Record { r[1].Principal = "mallory"; return r }, "change 2: its content does not match"},
		{"dropped row", func(r []Record) []Record { return append(r[:1], r[2:]...) }, "gap"},
		{"reordered", func(r []Record) []Record { r[1], r[2] = r[2], r[1]; return r }, "gap"},
		{"forged first", func(r []Record) []Record { r[0].PrevHash = strings.Repeat("0", 64); return r }, "genesis"},
		{"rehashed alone", func(r []Record) []Record {
			r[1].Principal = "mallory"
			r[1].Hash = Link(r[1].PrevHash, r[1].Canonical())
			return r
		}, "change 3: prev_hash"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(tc.mutate(chain(4)))
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Verify: %v, want %q", err, tc.want)
			}
		})
	}
	// The time is hashed in UTC with microseconds, whatever the zone it was read in.
	r := chain(1)[0]
	if c := string(r.Canonical()); !strings.Contains(c, `"at":"2026-12-07T04:00:01.000001Z"`) || strings.Contains(c, "hash") {
		t.Fatalf("canonical %s", r.Canonical())
	}
}
