package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

const controlKey = "sk-control-0123456789abcdef"

func TestControlKeysRejectsBadCalls(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		body        string
		wantStatus  int
		wantCode    string
		wantMessage []string
	}{
		{name: "not JSON", method: "POST", body: `accept=` + controlKey,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"invalid body"}},
		{name: "empty body", method: "POST", body: ``,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"must be a JSON object"}},
		{name: "unknown field, named by a key sent by mistake", method: "POST", body: `{"` + controlKey + `":"x"}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"with no other field"}},
		{name: "a key that is not a string", method: "POST", body: `{"accept":42}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"invalid body"}},
		{name: "neither accept nor revoke", method: "POST", body: `{}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"one of accept and revoke is required"}},
		{name: "both accept and revoke", method: "POST", body: `{"accept":"` + controlKey + `","revoke":"` + controlKey + `"}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"cannot both be set"}},
		{name: "until with revoke", method: "POST", body: `{"revoke":"` + controlKey + `","until":"2030-01-01T00:00:00Z"}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"until goes only with accept"}},
		{name: "until not RFC 3339", method: "POST", body: `{"accept":"` + controlKey + `","until":"tomorrow"}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"until must be an RFC 3339 time"}},
		{name: "a key with a space, and a bad until", method: "POST", body: `{"accept":"sk-has space","until":"x"}`,
			wantStatus: 400, wantCode: "invalid_request",
			wantMessage: []string{"accept: a key must be printable ASCII without spaces", "until must be"}},
		{name: "other method", method: "DELETE",
			wantStatus: 405, wantCode: "method_not_allowed", wantMessage: []string{"DELETE"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mock, logs := newTestControl(t)
			resp, body := do(t, c, tc.method, keysPath, tc.body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			var got errorBody
			if err := json.Unmarshal([]byte(body), &got); err != nil || got.Error.Code != tc.wantCode {
				t.Fatalf("body %s, want code %q (%v)", body, tc.wantCode, err)
			}
			for _, w := range tc.wantMessage {
				if !strings.Contains(got.Error.Message, w) {
					t.Errorf("message %q does not mention %q", got.Error.Message, w)
				}
			}
			if tc.wantStatus == 405 && resp.Header.Get("Allow") != "GET, POST" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
			for _, secret := range []string{controlKey, "sk-has space"} {
				if strings.Contains(body, secret) || strings.Contains(logs.String(), secret) {
					t.Errorf("the answer or the log quotes a key: %s\n%s", body, logs.String())
				}
			}
			if n := mock.AcceptedKeys(); n != 0 {
				t.Errorf("a rejected call left %d keys accepted", n)
			}
		})
	}
}

func TestControlKeysAcceptsRevokesAndCounts(t *testing.T) {
	c, mock, logs := newTestControl(t)
	const other = "sk-control-other-0123456789"
	steps := []struct {
		name   string
		method string
		body   string
		want   keysView
		// accepted says, after the step, whether each of controlKey and other passes.
		accepted [2]bool
	}{
		{name: "count before any key", method: "GET", want: keysView{Accepted: 0}, accepted: [2]bool{true, true}},
		{name: "accept", method: "POST", body: `{"accept":"` + controlKey + `"}`,
			want: keysView{Accepted: 1, Fingerprint: mockupstream.Fingerprint(controlKey)}, accepted: [2]bool{true, false}},
		{name: "accept until later", method: "POST", body: `{"accept":"` + other + `","until":"2999-01-01T00:00:00+01:00"}`,
			want:     keysView{Accepted: 2, Fingerprint: mockupstream.Fingerprint(other), Until: "2998-12-31T23:00:00Z"},
			accepted: [2]bool{true, true}},
		{name: "count", method: "GET", want: keysView{Accepted: 2}, accepted: [2]bool{true, true}},
		{name: "revoke", method: "POST", body: `{"revoke":"` + controlKey + `"}`,
			want: keysView{Accepted: 1, Fingerprint: mockupstream.Fingerprint(controlKey)}, accepted: [2]bool{false, true}},
		{name: "accept until a past moment refuses at once", method: "POST", body: `{"accept":"` + other + `","until":"2020-01-01T00:00:00Z"}`,
			want:     keysView{Accepted: 0, Fingerprint: mockupstream.Fingerprint(other), Until: "2020-01-01T00:00:00Z"},
			accepted: [2]bool{false, false}},
	}
	for _, step := range steps {
		resp, body := do(t, c, step.method, keysPath, step.body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", step.name, resp.StatusCode, body)
		}
		var got keysView
		if err := json.Unmarshal([]byte(body), &got); err != nil || got != step.want {
			t.Fatalf("%s: answered %s, want %+v (%v)", step.name, body, step.want, err)
		}
		for i, k := range []string{controlKey, other} {
			if pass := chatWithKey(mock, k) == http.StatusOK; pass != step.accepted[i] {
				t.Errorf("%s: key %d passes %v, want %v", step.name, i, pass, step.accepted[i])
			}
		}
	}

	// One log line per call, naming a POST's action and the key's fingerprint, never the key.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != len(steps) {
		t.Fatalf("%d log lines for %d calls:\n%s", len(lines), len(steps), logs.String())
	}
	if !strings.Contains(lines[1], `"action":"accept"`) || !strings.Contains(lines[1], `"fingerprint":"`+mockupstream.Fingerprint(controlKey)+`"`) ||
		!strings.Contains(lines[4], `"action":"revoke"`) {
		t.Errorf("log lines:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), controlKey) || strings.Contains(logs.String(), other) {
		t.Fatalf("the log holds a key:\n%s", logs.String())
	}
}

// TestControlKeysUntilExpires checks that a key accepted until a moment over the
// control API is refused from that moment on.
func TestControlKeysUntilExpires(t *testing.T) {
	c, mock, _ := newTestControl(t)
	until := time.Now().Add(time.Second).UTC().Format(time.RFC3339Nano)
	if resp, body := do(t, c, "POST", keysPath, `{"accept":"`+controlKey+`","until":"`+until+`"}`); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if s := chatWithKey(mock, controlKey); s != http.StatusOK {
		t.Fatalf("before until: status %d", s)
	}
	waitfor.That(t, "the mock's state", func() bool { return mock.AcceptedKeys() == 0 })
	if s := chatWithKey(mock, controlKey); s != http.StatusUnauthorized {
		t.Errorf("after until: status %d, want 401", s)
	}
}
