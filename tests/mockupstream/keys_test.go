package mockupstream_test

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

const (
	oldKey = "sk-old-0123456789abcdef-OLD1"
	newKey = "sk-new-fedcba9876543210-NEW2"
)

// chatStatus sends a chat completion with key as a Bearer token ("" for no
// Authorization header) and returns the status.
func chatStatus(t *testing.T, url, key string) int {
	t.Helper()
	var h http.Header
	if key != "" {
		h = http.Header{"Authorization": {"Bearer " + key}}
	}
	resp, _ := call(t, http.MethodPost, url+"/v1/chat/completions", chatBody, h)
	return resp.StatusCode
}

// messagesStatus sends a /v1/messages request with key as x-api-key ("" for none) and
// returns the status.
func messagesStatus(t *testing.T, url, key string) int {
	t.Helper()
	h := http.Header{"Anthropic-Version": {"2023-06-01"}}
	if key != "" {
		h.Set("X-Api-Key", key)
	}
	resp, _ := call(t, http.MethodPost, url+"/v1/messages", messagesBody, h)
	return resp.StatusCode
}

func TestKeySet(t *testing.T) {
	past := time.Now().Add(-time.Minute)
	future := time.Now().Add(time.Hour)
	tests := []struct {
		name      string
		opts      mockupstream.Options
		setup     func(m *mockupstream.Server)
		want      map[string]int // status by key sent ("" for none)
		wantCount int
	}{
		{name: "no key accepted: any request passes",
			want: map[string]int{"": 200, oldKey: 200, newKey: 200}},
		{name: "RequireKey seeds the set", opts: mockupstream.Options{RequireKey: oldKey},
			want: map[string]int{"": 401, oldKey: 200, newKey: 401}, wantCount: 1},
		{name: "AcceptKey adds a key", opts: mockupstream.Options{RequireKey: oldKey},
			setup: func(m *mockupstream.Server) { m.AcceptKey(newKey) },
			want:  map[string]int{"": 401, oldKey: 200, newKey: 200}, wantCount: 2},
		{name: "RevokeKey refuses a key", opts: mockupstream.Options{RequireKey: oldKey},
			setup: func(m *mockupstream.Server) { m.AcceptKey(newKey); m.RevokeKey(oldKey) },
			want:  map[string]int{"": 401, oldKey: 401, newKey: 200}, wantCount: 1},
		{name: "revoking the last key refuses every request", opts: mockupstream.Options{RequireKey: oldKey},
			setup: func(m *mockupstream.Server) { m.RevokeKey(oldKey) },
			want:  map[string]int{"": 401, oldKey: 401, newKey: 401}},
		{name: "a key accepted until later passes", opts: mockupstream.Options{RequireKey: newKey},
			setup: func(m *mockupstream.Server) { m.AcceptKeyUntil(oldKey, future) },
			want:  map[string]int{oldKey: 200, newKey: 200}, wantCount: 2},
		{name: "a key accepted until a past moment is refused", opts: mockupstream.Options{RequireKey: newKey},
			setup: func(m *mockupstream.Server) { m.AcceptKeyUntil(oldKey, past) },
			want:  map[string]int{oldKey: 401, newKey: 200}, wantCount: 1},
		{name: "AcceptKeyUntil ends a key accepted for good",
			setup: func(m *mockupstream.Server) { m.AcceptKey(oldKey); m.AcceptKeyUntil(oldKey, past); m.AcceptKey(newKey) },
			want:  map[string]int{oldKey: 401, newKey: 200}, wantCount: 1},
		{name: "AcceptKey makes an ending key good for good",
			setup: func(m *mockupstream.Server) { m.AcceptKeyUntil(oldKey, past); m.AcceptKey(oldKey) },
			want:  map[string]int{oldKey: 200, newKey: 401}, wantCount: 1},
		{name: "an empty key is ignored",
			setup: func(m *mockupstream.Server) { m.AcceptKey("") },
			want:  map[string]int{"": 200, oldKey: 200}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, url := start(t, tc.opts)
			if tc.setup != nil {
				tc.setup(m)
			}
			for key, want := range tc.want {
				if got := chatStatus(t, url, key); got != want {
					t.Errorf("chat with key %q: status %d, want %d", mockupstream.Fingerprint(key), got, want)
				}
				if got := messagesStatus(t, url, key); got != want {
					t.Errorf("messages with key %q: status %d, want %d", mockupstream.Fingerprint(key), got, want)
				}
			}
			if got := m.AcceptedKeys(); got != tc.wantCount {
				t.Errorf("AcceptedKeys %d, want %d", got, tc.wantCount)
			}
		})
	}
}

// TestKeyUntilExpires checks that a key accepted until a moment passes before it and
// is refused from it on, as after a rotation's overlap.
func TestKeyUntilExpires(t *testing.T) {
	m, url := start(t, mockupstream.Options{RequireKey: newKey})
	m.AcceptKeyUntil(oldKey, time.Now().Add(300*time.Millisecond))
	if got := chatStatus(t, url, oldKey); got != 200 {
		t.Fatalf("old key during the overlap: status %d", got)
	}
	waitfor.That(t, "the mock's state", func() bool { return m.AcceptedKeys() == 1 })
	if got := chatStatus(t, url, oldKey); got != 401 {
		t.Errorf("old key after the overlap: status %d, want 401", got)
	}
	if got := chatStatus(t, url, newKey); got != 200 {
		t.Errorf("new key after the overlap: status %d, want 200", got)
	}
}

func TestFingerprint(t *testing.T) {
	if got := mockupstream.Fingerprint(""); got != "" {
		t.Errorf("Fingerprint(\"\") = %q, want \"\"", got)
	}
	a, b := mockupstream.Fingerprint(oldKey), mockupstream.Fingerprint(newKey)
	if _, err := hex.DecodeString(a); err != nil || len(a) != 8 {
		t.Errorf("Fingerprint = %q, want 8 hex digits", a)
	}
	if a == b || a != mockupstream.Fingerprint(oldKey) {
		t.Errorf("fingerprints %q and %q: want stable and distinct", a, b)
	}
}

// TestKeyFingerprintsRecorded checks that each recorded request names its key by
// fingerprint, on both dialects, refused requests included, and never holds the key.
func TestKeyFingerprintsRecorded(t *testing.T) {
	m, url := start(t, mockupstream.Options{RequireKey: newKey})
	before := time.Now()
	chatStatus(t, url, oldKey)
	chatStatus(t, url, newKey)
	messagesStatus(t, url, newKey)
	chatStatus(t, url, "")
	// On /v1/messages only x-api-key counts; on the OpenAI endpoints only the Bearer token.
	call(t, http.MethodPost, url+"/v1/messages", messagesBody,
		http.Header{"Authorization": {"Bearer " + oldKey}, "Anthropic-Version": {"2023-06-01"}})
	call(t, http.MethodPost, url+"/v1/chat/completions", chatBody, http.Header{"X-Api-Key": {oldKey}})

	want := []string{
		mockupstream.Fingerprint(oldKey),
		mockupstream.Fingerprint(newKey),
		mockupstream.Fingerprint(newKey),
		"", "", "",
	}
	reqs := m.Requests()
	after := time.Now()
	if len(reqs) != len(want) {
		t.Fatalf("%d requests recorded, want %d", len(reqs), len(want))
	}
	for i, r := range reqs {
		if r.At.Before(before) || r.At.After(after) || (i > 0 && r.At.Before(reqs[i-1].At)) {
			t.Errorf("request %d: At %v, want in order between %v and %v", i, r.At, before, after)
		}
		if r.KeyFingerprint != want[i] {
			t.Errorf("request %d (%s): fingerprint %q, want %q", i, r.Path, r.KeyFingerprint, want[i])
		}
		if s := fmt.Sprintf("%+v", r); strings.Contains(s, oldKey) || strings.Contains(s, newKey) {
			t.Errorf("request %d holds a key: %s", i, s)
		}
	}
}

// TestUnauthorizedBodies checks the 401 bodies: the provider's schema, and the key
// masked to at most its last 4 characters, never whole.
func TestUnauthorizedBodies(t *testing.T) {
	tests := []struct {
		name        string
		path        string
		header      http.Header
		wantMessage string // in an OpenAI body; "" for an Anthropic one
		wantType    string
		key         string // the key sent, which must not appear whole
	}{
		{name: "long wrong key shows its last 4", path: "/v1/chat/completions",
			header:      http.Header{"Authorization": {"Bearer " + oldKey}},
			wantMessage: "Incorrect API key provided: ************************OLD1.", wantType: "invalid_request_error", key: oldKey},
		{name: "short wrong key is masked whole", path: "/v1/embeddings",
			header:      http.Header{"Authorization": {"Bearer abc123"}},
			wantMessage: "Incorrect API key provided: ******.", wantType: "invalid_request_error", key: "abc123"},
		{name: "very long key has a bounded mask", path: "/v1/models",
			header:      http.Header{"Authorization": {"Bearer " + strings.Repeat("k", 200) + "TAIL"}},
			wantMessage: "Incorrect API key provided: " + strings.Repeat("*", 40) + "TAIL.", wantType: "invalid_request_error",
			key: strings.Repeat("k", 200) + "TAIL"},
		{name: "no key", path: "/v1/chat/completions",
			wantMessage: "You didn't provide an API key.", wantType: "invalid_request_error"},
		{name: "not Bearer", path: "/v1/chat/completions", header: http.Header{"Authorization": {oldKey}},
			wantMessage: "You didn't provide an API key.", wantType: "invalid_request_error", key: oldKey},
		{name: "anthropic wrong key", path: "/v1/messages",
			header:   http.Header{"X-Api-Key": {oldKey}, "Anthropic-Version": {"2023-06-01"}},
			wantType: "authentication_error", key: oldKey},
		{name: "anthropic no key", path: "/v1/messages",
			header:   http.Header{"Anthropic-Version": {"2023-06-01"}},
			wantType: "authentication_error"},
	}
	_, url := start(t, mockupstream.Options{RequireKey: newKey})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, body := http.MethodPost, chatBody
			switch tc.path {
			case "/v1/models":
				method, body = http.MethodGet, ""
			case "/v1/embeddings":
				body = `{"model":"m","input":"x"}`
			case "/v1/messages":
				body = messagesBody
			}
			resp, got := call(t, method, url+tc.path, body, tc.header)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", resp.StatusCode, got)
			}
			if tc.key != "" && strings.Contains(string(got), tc.key) {
				t.Fatalf("the body echoes the key: %s", got)
			}
			if strings.Contains(string(got), newKey) {
				t.Fatalf("the body reveals the accepted key: %s", got)
			}
			if tc.wantMessage == "" {
				e := decodeJSON[anthropicErrorBody](t, got)
				if e.Type != "error" || e.Error == nil || e.Error.Type != tc.wantType {
					t.Errorf("body %s, want an Anthropic %s", got, tc.wantType)
				}
				return
			}
			e := decodeJSON[openAIError](t, got)
			if e.Error == nil || e.Error.Type != tc.wantType || e.Error.Code == nil || *e.Error.Code != "invalid_api_key" ||
				e.Error.Param != nil || !strings.HasPrefix(e.Error.Message, tc.wantMessage) {
				t.Errorf("body %s, want type %s, code invalid_api_key, no param and a message starting %q", got, tc.wantType, tc.wantMessage)
			}
		})
	}
}

// TestKeysConcurrently accepts, revokes and counts keys while requests check them, for
// the race detector.
func TestKeysConcurrently(t *testing.T) {
	m, url := start(t, mockupstream.Options{RequireKey: newKey})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			key := fmt.Sprintf("sk-churn-%d-0123456789", i)
			for range 50 {
				m.AcceptKey(key)
				m.AcceptKeyUntil(key, time.Now().Add(time.Millisecond))
				m.RevokeKey(key)
				_ = m.AcceptedKeys()
			}
		})
	}
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, url+"/v1/models", nil)
			req.Header.Set("Authorization", "Bearer "+newKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d with the accepted key", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := m.AcceptedKeys(); got != 1 {
		t.Errorf("AcceptedKeys %d after the churn, want 1", got)
	}
}
