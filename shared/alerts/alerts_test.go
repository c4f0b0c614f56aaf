package alerts

import (
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	raw, err := Encode(Alert{ID: "1", Kind: KindKeyRevoked, Severity: SeverityCritical, Subject: "openai",
		Message: "revoked", Details: map[string]any{"reason": "x"}, At: time.Unix(1, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	a, err := Decode(raw)
	if err != nil || a.Version != SchemaVersion || a.Kind != KindKeyRevoked || a.Details["reason"] != "x" {
		t.Fatalf("%+v, %v", a, err)
	}
	for _, bad := range []string{`{`, `{"version":2,"kind":"k"}`, `{"version":1}`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode accepted %s", bad)
		}
	}
}
