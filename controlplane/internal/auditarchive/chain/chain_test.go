package chain

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/audit"
)

// TestHashesMatchSha256sum pins the chain to values computed with coreutils:
//
//	printf '%s' 'portcullis-audit:eu' | sha256sum
//	printf '%s%s' "$genesis" '{"v":1}' | sha256sum
func TestHashesMatchSha256sum(t *testing.T) {
	tests := []struct{ name, got, want string }{
		{"genesis", Genesis("eu"), "17709ba1b265c51321976841c2d3a548e829cf7a2a1543a1e0e3e7d38fc5d37d"},
		{"link", Link(Genesis("eu"), []byte(`{"v":1}`)), "17f5181d5a39b65854e8c18d908afa6985c6a03cfac462c83f7b794adbfb0d34"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want || !ValidHash(tc.got) {
				t.Fatalf("got %s, want %s", tc.got, tc.want)
			}
		})
	}
}

func TestCanonicalIsStable(t *testing.T) {
	paris := time.FixedZone("CEST", 2*3600)
	a := audit.Event{TS: time.Date(2026, 4, 14, 22, 0, 0, 0, paris), RequestID: "r", Region: "eu",
		Headers: map[string]string{"x-request-id": "r", "content-type": "application/json"}}
	b := a
	b.TS = a.TS.UTC()
	ja, err := Canonical(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, _ := Canonical(b)
	if string(ja) != string(jb) || !strings.Contains(string(ja), `"ts":"2026-04-14T20:00:00Z"`) ||
		!strings.Contains(string(ja), `"headers":{"content-type":"application/json","x-request-id":"r"}`) {
		t.Fatalf("canonical forms differ or are not UTC with sorted headers:\n%s\n%s", ja, jb)
	}
	for _, bad := range []string{"", strings.Repeat("a", 63), strings.Repeat("A", 64), strings.Repeat("g", 64)} {
		if ValidHash(bad) {
			t.Errorf("ValidHash(%q) is true", bad)
		}
	}
}
