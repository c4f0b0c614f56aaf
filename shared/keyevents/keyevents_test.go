package keyevents

import (
	"strings"
	"testing"
	"time"
)

func TestRoundTripAndRejections(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	raw, err := Encode(Event{ID: "7", Kind: KindRotated, Provider: "openai", Deployment: "openai-eu",
		Path: "secret/portcullis/openai-eu", KeyVersion: 3, PreviousVersion: 2, OverlapUntil: at.Add(2 * time.Hour), At: at})
	if err != nil {
		t.Fatal(err)
	}
	e, err := DecodeEvent(raw)
	if err != nil || e.Version != SchemaVersion || e.KeyVersion != 3 || !e.OverlapUntil.Equal(at.Add(2*time.Hour)) {
		t.Fatalf("round trip: %+v, %v", e, err)
	}
	raw, _ = Encode(Event{Kind: KindRevoked, Deployment: "d", At: at})
	if strings.Contains(string(raw), "overlap_until") {
		t.Fatalf("a revocation carries an overlap: %s", raw)
	}
	a, err := DecodeAccess(mustEncode(t, Access{ID: "w1-1", ActorKind: ActorWorker, ActorID: "w1", Path: "p", Reason: ReasonStartup, OK: true, At: at}))
	if err != nil || a.ActorID != "w1" || !a.OK {
		t.Fatalf("access round trip: %+v, %v", a, err)
	}

	for name, raw := range map[string]string{
		"not json":       `{`,
		"future version": `{"version":2,"kind":"rotated","deployment":"d"}`,
		"no version":     `{"kind":"rotated","deployment":"d"}`,
		"unknown kind":   `{"version":1,"kind":"deleted","deployment":"d"}`,
		"no deployment":  `{"version":1,"kind":"revoked"}`,
	} {
		if _, err := DecodeEvent([]byte(raw)); err == nil {
			t.Errorf("DecodeEvent accepted %s: %s", name, raw)
		}
	}
	for name, raw := range map[string]string{
		"no id":         `{"version":1,"actor_kind":"worker","actor_id":"w","path":"p"}`,
		"unknown actor": `{"version":1,"id":"x","actor_kind":"robot","actor_id":"w","path":"p"}`,
		"no actor id":   `{"version":1,"id":"x","actor_kind":"worker","path":"p"}`,
	} {
		if _, err := DecodeAccess([]byte(raw)); err == nil {
			t.Errorf("DecodeAccess accepted %s: %s", name, raw)
		}
	}
}

func mustEncode(t *testing.T, a Access) []byte {
	t.Helper()
	raw, err := Encode(a)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
