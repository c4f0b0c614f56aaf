package adminapi_test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

const overrideURL = "/admin/v1/clients/Moltbot-Agent-07/limit-override"

// overrideFixture is fixture plus the client Moltbot-Agent-07.
func (h *harness) overrideFixture() {
	h.t.Helper()
	h.fixture()
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/clients", `{"client_id":"Moltbot-Agent-07","tenant":"acme","tier":"default","residency":"eu"}`)
}

// expiresAt parses the expires_at of an override's JSON.
func expiresAt(t *testing.T, body map[string]any) time.Time {
	t.Helper()
	s, _ := body["expires_at"].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("expires_at %q: %v", s, err)
	}
	return at
}

func TestLimitOverrideLifecycle(t *testing.T) {
	h := newHarness(t)
	h.overrideFixture()
	ctx := context.Background()
	type m = map[string]any
	in := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339) }
	until := in(2 * time.Hour)

	steps := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		want                     m    // fields of the response body; nil value: absent
		ttl                      int  // if set, expires_at must be about now + ttl seconds
		changes                  bool // whether the step changes the policy
		snapshot                 func(*policy.Snapshot) bool
	}{
		{name: "none yet", method: http.MethodGet, path: overrideURL, status: http.StatusNotFound},
		{name: "delete none", method: http.MethodDelete, path: overrideURL, status: http.StatusNotFound},
		{name: "empty list", method: http.MethodGet, path: "/admin/v1/limit-overrides", status: http.StatusOK,
			want: m{"items": []any{}}},
		{name: "set with a ttl", method: http.MethodPut, path: overrideURL,
			body:   `{"requests_per_minute":5,"ttl_seconds":900,"reason":"token spike","set_by":"anomaly:forged"}`,
			status: http.StatusOK, ttl: 900, changes: true,
			want: m{"client_id": "Moltbot-Agent-07", "requests_per_minute": 5, "tokens_per_hour": nil, "max_concurrent_requests": nil,
				"reason": "token spike", "set_by": "harness-admin", "revision": 1},
			snapshot: func(s *policy.Snapshot) bool {
				return len(s.LimitOverrides) == 1 && s.LimitOverrides[0].ClientID == "Moltbot-Agent-07" &&
					s.LimitOverrides[0].RequestsPerMinute == 5 && s.LimitOverrides[0].SetBy == "harness-admin"
			}},
		{name: "get", method: http.MethodGet, path: overrideURL, status: http.StatusOK,
			want: m{"requests_per_minute": 5, "reason": "token spike", "revision": 1}},
		{name: "replace with a timestamp", method: http.MethodPut, path: overrideURL,
			body:   `{"tokens_per_hour":500000,"max_concurrent_requests":20,"expires_at":"` + until + `","reason":"launch day","revision":1}`,
			status: http.StatusOK, changes: true,
			want: m{"requests_per_minute": nil, "tokens_per_hour": 500000, "max_concurrent_requests": 20, "expires_at": until,
				"reason": "launch day", "revision": 2},
			snapshot: func(s *policy.Snapshot) bool {
				return len(s.LimitOverrides) == 1 && s.LimitOverrides[0].RequestsPerMinute == 0 && s.LimitOverrides[0].TokensPerHour == 500000
			}},
		{name: "list", method: http.MethodGet, path: "/admin/v1/limit-overrides", status: http.StatusOK},
		{name: "stale If-Match", method: http.MethodPut, path: overrideURL, headers: []string{"If-Match", `"1"`},
			body: `{"requests_per_minute":1,"ttl_seconds":60,"reason":"x"}`, status: http.StatusPreconditionFailed},
		{name: "current If-Match", method: http.MethodPut, path: overrideURL, headers: []string{"If-Match", `"2"`},
			body: `{"requests_per_minute":1,"ttl_seconds":2592000,"reason":"thirty days is the most"}`, status: http.StatusOK,
			ttl: 2592000, changes: true, want: m{"requests_per_minute": 1, "revision": 3}},
		{name: "clear", method: http.MethodDelete, path: overrideURL, status: http.StatusNoContent, changes: true,
			snapshot: func(s *policy.Snapshot) bool { return len(s.LimitOverrides) == 0 }},
		{name: "gone", method: http.MethodGet, path: overrideURL, status: http.StatusNotFound},
		{name: "clear again", method: http.MethodDelete, path: overrideURL, status: http.StatusNotFound},
		{name: "If-Match without an override", method: http.MethodPut, path: overrideURL, headers: []string{"If-Match", `"3"`},
			body: `{"requests_per_minute":1,"ttl_seconds":60,"reason":"x"}`, status: http.StatusNotFound},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before, calls := h.version(), h.changes.Load()
			r := h.do(s.method, s.path, s.body, s.headers...)
			if r.status != s.status {
				t.Fatalf("status %d, want %d: %s", r.status, s.status, r.body)
			}
			if s.status == http.StatusNotFound && r.errorCode(t) != "not_found" {
				t.Fatalf("code %q, want not_found", r.errorCode(t))
			}
			if s.want != nil {
				matches(t, s.name, r.json(t), s.want)
			}
			if s.ttl != 0 {
				want := time.Now().Add(time.Duration(s.ttl) * time.Second)
				if got := expiresAt(t, r.json(t)); got.Before(want.Add(-time.Minute)) || got.After(want) {
					t.Errorf("expires_at %v, want about %v", got, want)
				}
			}
			if s.status == http.StatusOK && s.method == http.MethodPut && r.header.Get("ETag") != fmt.Sprintf(`"%v"`, r.json(t)["revision"]) {
				t.Errorf("ETag %q does not match the revision", r.header.Get("ETag"))
			}
			v, n := h.version(), h.changes.Load()
			if s.changes && (v != before+1 || n != calls+1) {
				t.Errorf("version %d -> %d and %d onChange calls, want +1 and 1", before, v, n-calls)
			}
			if !s.changes && (v != before || n != calls) {
				t.Errorf("version %d -> %d and %d onChange calls, want no change", before, v, n-calls)
			}
			if s.snapshot != nil {
				snap, err := h.st.Snapshot(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !s.snapshot(snap) {
					t.Errorf("snapshot does not reflect the change: %+v", snap.LimitOverrides)
				}
			}
		})
	}
}

func TestLimitOverrideListShowsActiveOnesInClientOrder(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	for _, id := range []string{"zed", "Bob", "alice", "expired"} {
		h.must(http.StatusCreated, http.MethodPost, "/admin/v1/clients", `{"client_id":"`+id+`","tenant":"acme","tier":"default","residency":"global"}`)
	}
	for _, id := range []string{"zed", "Bob", "alice"} {
		h.must(http.StatusOK, http.MethodPut, "/admin/v1/clients/"+id+"/limit-override", `{"requests_per_minute":3,"ttl_seconds":600,"reason":"r"}`)
	}
	// The API refuses a past expiry, so write an expired override straight to the store.
	if _, err := h.st.LimitOverrides().Put(context.Background(), policy.LimitOverride{
		ClientID: "expired", RequestsPerMinute: 1, ExpiresAt: time.Now().Add(-time.Second), Reason: "old"}); err != nil {
		t.Fatal(err)
	}
	if r := h.do(http.MethodGet, "/admin/v1/clients/expired/limit-override", ""); r.status != http.StatusNotFound {
		t.Fatalf("GET of an expired override: %d %s", r.status, r.body)
	}
	if r := h.do(http.MethodDelete, "/admin/v1/clients/expired/limit-override", ""); r.status != http.StatusNotFound {
		t.Fatalf("DELETE of an expired override: %d %s", r.status, r.body)
	}

	var got []string
	cursor := ""
	for range 5 {
		path := "/admin/v1/limit-overrides?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		page := h.must(http.StatusOK, http.MethodGet, path, "").json(t)
		for _, it := range page["items"].([]any) {
			got = append(got, it.(map[string]any)["client_id"].(string))
		}
		next, _ := page["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if want := []string{"Bob", "alice", "zed"}; !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}

	// Deleting a client deletes its override.
	h.must(http.StatusNoContent, http.MethodDelete, "/admin/v1/clients/zed", "")
	if r := h.do(http.MethodGet, "/admin/v1/clients/zed/limit-override", ""); r.status != http.StatusNotFound {
		t.Fatalf("override of a deleted client: %d %s", r.status, r.body)
	}
}

func TestLimitOverrideBadInputIsRefusedWithEveryProblemAtOnce(t *testing.T) {
	h := newHarness(t)
	h.overrideFixture()
	in := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339) }
	tests := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
		code                     string
		fields                   []string // exactly the fields that must be reported
	}{
		{name: "no limit", body: `{"ttl_seconds":60,"reason":"r"}`, fields: []string{"limits"}},
		{name: "null limits are left out", body: `{"requests_per_minute":null,"ttl_seconds":60,"reason":"r"}`, fields: []string{"limits"}},
		{name: "zero limit", body: `{"requests_per_minute":0,"ttl_seconds":60,"reason":"r"}`, fields: []string{"requests_per_minute"}},
		{name: "negative limit", body: `{"tokens_per_hour":-1,"ttl_seconds":60,"reason":"r"}`, fields: []string{"tokens_per_hour"}},
		{name: "fractional limit", body: `{"max_concurrent_requests":1.5,"ttl_seconds":60,"reason":"r"}`, fields: []string{"max_concurrent_requests"}},
		{name: "string limit", body: `{"max_concurrent_requests":"5","ttl_seconds":60,"reason":"r"}`, fields: []string{"max_concurrent_requests"}},
		{name: "no expiry", body: `{"requests_per_minute":5,"reason":"r"}`, fields: []string{"expires_at"}},
		{name: "both expiries", body: `{"requests_per_minute":5,"ttl_seconds":60,"expires_at":"` + in(time.Hour) + `","reason":"r"}`,
			fields: []string{"ttl_seconds"}},
		{name: "expiry in the past", body: `{"requests_per_minute":5,"expires_at":"` + in(-time.Minute) + `","reason":"r"}`,
			fields: []string{"expires_at"}},
		{name: "expiry beyond 30 days", body: `{"requests_per_minute":5,"expires_at":"` + in(30*24*time.Hour+time.Hour) + `","reason":"r"}`,
			fields: []string{"expires_at"}},
		{name: "expiry not a timestamp", body: `{"requests_per_minute":5,"expires_at":"tomorrow","reason":"r"}`, fields: []string{"expires_at"}},
		{name: "zero ttl", body: `{"requests_per_minute":5,"ttl_seconds":0,"reason":"r"}`, fields: []string{"ttl_seconds"}},
		{name: "ttl beyond 30 days", body: `{"requests_per_minute":5,"ttl_seconds":2592001,"reason":"r"}`, fields: []string{"ttl_seconds"}},
		{name: "no reason", body: `{"requests_per_minute":5,"ttl_seconds":60}`, fields: []string{"reason"}},
		{name: "blank reason", body: `{"requests_per_minute":5,"ttl_seconds":60,"reason":"  "}`, fields: []string{"reason"}},
		{name: "reason too long", body: `{"requests_per_minute":5,"ttl_seconds":60,"reason":"` + strings.Repeat("x", 501) + `"}`,
			fields: []string{"reason"}},
		{name: "reason with a control character", body: `{"requests_per_minute":5,"ttl_seconds":60,"reason":"a\u0007b"}`, fields: []string{"reason"}},
		{name: "unknown field", body: `{"requests_per_minute":5,"ttl_seconds":60,"reason":"r","colour":"red"}`, fields: []string{"colour"}},
		{name: "another client's id", body: `{"client_id":"other","requests_per_minute":5,"ttl_seconds":60,"reason":"r"}`, fields: []string{"client_id"}},
		{name: "everything at once",
			body:   `{"requests_per_minute":0,"tokens_per_hour":-1,"max_concurrent_requests":"x","expires_at":"soon","ttl_seconds":5,"colour":1}`,
			fields: []string{"requests_per_minute", "tokens_per_hour", "max_concurrent_requests", "expires_at", "ttl_seconds", "reason", "colour"}},
		{name: "unknown client", path: "/admin/v1/clients/ghost/limit-override",
			body: `{"requests_per_minute":5,"ttl_seconds":60,"reason":"r"}`, status: http.StatusNotFound, code: "not_found"},
		{name: "client id no client can have", path: "/admin/v1/clients/-bad%20id/limit-override",
			body: `{"requests_per_minute":5,"ttl_seconds":60,"reason":"r"}`, status: http.StatusNotFound, code: "not_found"},
		{name: "malformed JSON", body: `{"requests_per_minute":`, status: http.StatusBadRequest, code: "invalid_json"},
		{name: "wrong content type", body: `{}`, headers: []string{"Content-Type", "text/plain"},
			status: http.StatusUnsupportedMediaType, code: "unsupported_media_type"},
		{name: "POST on the list", method: http.MethodPost, path: "/admin/v1/limit-overrides", body: `{}`,
			status: http.StatusMethodNotAllowed, code: "method_not_allowed"},
		{name: "PATCH on an override", method: http.MethodPatch, body: `{}`, status: http.StatusMethodNotAllowed, code: "method_not_allowed"},
		{name: "no item route under the list", method: http.MethodGet, path: "/admin/v1/limit-overrides/Moltbot-Agent-07",
			status: http.StatusNotFound, code: "not_found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, path, status, code := tc.method, tc.path, tc.status, tc.code
			if method == "" {
				method = http.MethodPut
			}
			if path == "" {
				path = overrideURL
			}
			if status == 0 {
				status, code = http.StatusUnprocessableEntity, "validation_failed"
			}
			before := h.version()
			r := h.do(method, path, tc.body, tc.headers...)
			if r.status != status || r.errorCode(t) != code {
				t.Fatalf("got %d %q, want %d %q: %s", r.status, r.errorCode(t), status, code, r.body)
			}
			got := r.errorFields(t)
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tc.fields))
			if !reflect.DeepEqual(got, want) {
				t.Errorf("reported fields %v, want exactly %v: %s", got, want, r.body)
			}
			if status == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
			if v := h.version(); v != before {
				t.Errorf("a refused request moved the policy version from %d to %d", before, v)
			}
		})
	}
	if r := h.send(http.MethodGet, overrideURL, ""); r.status != http.StatusUnauthorized {
		t.Fatalf("GET without the admin token: %d", r.status)
	}
	if r := h.send(http.MethodGet, "/admin/v1/limit-overrides", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("list without the admin token: %d", r.status)
	}
}
