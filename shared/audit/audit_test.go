package audit

import (
	"strings"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	code := "rate_limit_exceeded"
	raw, err := Encode(Event{TS: time.Unix(1700000000, 0).UTC(), RequestID: "r1", Region: "eu", Status: 429, ErrorCode: &code})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"v":1`, `"flags":[]`, `"headers":{}`, `"error_code":"rate_limit_exceeded"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("%s lacks %s", raw, want)
		}
	}
	e, err := Decode(raw)
	if err != nil || e.RequestID != "r1" || *e.ErrorCode != code {
		t.Fatalf("%+v, %v", e, err)
	}
	for _, bad := range []string{`{`, `{"v":2,"request_id":"r","region":"eu"}`, `{"v":1,"region":"eu"}`, `{"v":1,"request_id":"r"}`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode accepted %s", bad)
		}
	}
}

func TestHash(t *testing.T) {
	// RFC 4231 test case 2.
	got := Hash([]byte("Jefe"), []byte("what do ya want for nothing?"))
	if got != "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" {
		t.Fatalf("Hash = %s", got)
	}
}

func TestSourceNet(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.77":          "203.0.113.0/24",
		"::ffff:203.0.113.77":   "203.0.113.0/24",
		"2001:db8:1234:5678::1": "2001:db8:1234::/48",
		"not-an-ip":             "",
	} {
		if got := SourceNet(in); got != want {
			t.Errorf("SourceNet(%q) = %q, want %q", in, got, want)
		}
	}
}
