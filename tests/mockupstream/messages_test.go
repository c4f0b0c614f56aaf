package mockupstream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

const messagesBody = `{"model":"claude-3-5-sonnet","max_tokens":50,"system":"be brief","messages":[{"role":"user","content":"hi there"}]}`

var anthropicHeaders = http.Header{"Anthropic-Version": {"2023-06-01"}}

// namedEvent is one SSE event with its "event:" name.
type namedEvent struct {
	Name string
	Data string
}

// namedEvents reads an SSE body into events, and returns the read error that ended it
// (nil on a clean end).
func namedEvents(r io.Reader) ([]namedEvent, error) {
	var events []namedEvent
	var cur namedEvent
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, "event: "); ok {
			cur.Name = name
		} else if data, ok := strings.CutPrefix(line, "data: "); ok {
			cur.Data = data
		} else if line == "" && cur != (namedEvent{}) {
			events = append(events, cur)
			cur = namedEvent{}
		}
	}
	return events, sc.Err()
}

type anthropicErrorBody struct {
	Type  string `json:"type"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestMessagesStreamEvents(t *testing.T) {
	tests := []struct {
		name      string
		opts      mockupstream.Options
		body      string
		wantTypes []string
		wantUsage bool
	}{
		{
			name: "text",
			body: `{"model":"c","max_tokens":2,"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			wantTypes: []string{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
				"content_block_stop", "message_delta", "message_stop"},
			wantUsage: true,
		},
		{
			name: "tool use",
			body: `{"model":"c","max_tokens":2,"stream":true,"tools":[{"name":"w","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"weather?"}]}`,
			wantTypes: []string{"message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
				"content_block_stop", "message_delta", "message_stop"},
			wantUsage: true,
		},
		{
			name: "no usage",
			opts: mockupstream.Options{NoUsage: true},
			body: `{"model":"c","max_tokens":1,"stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			wantTypes: []string{"message_start", "content_block_start", "ping", "content_block_delta",
				"content_block_stop", "message_delta", "message_stop"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, url := start(t, tc.opts)
			resp, body := call(t, http.MethodPost, url+"/v1/messages", tc.body, anthropicHeaders)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			events, err := namedEvents(strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			usages := 0
			for _, ev := range events {
				var data struct {
					Type    string          `json:"type"`
					Usage   json.RawMessage `json:"usage"`
					Message struct {
						Usage json.RawMessage `json:"usage"`
					} `json:"message"`
				}
				if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
					t.Fatalf("event %q: %v", ev.Data, err)
				}
				if data.Type != ev.Name {
					t.Errorf("event name %q carries type %q", ev.Name, data.Type)
				}
				if data.Usage != nil || data.Message.Usage != nil {
					usages++
				}
				types = append(types, ev.Name)
			}
			if strings.Join(types, ",") != strings.Join(tc.wantTypes, ",") {
				t.Errorf("events %q, want %q", types, tc.wantTypes)
			}
			if want := map[bool]int{true: 2, false: 0}[tc.wantUsage]; usages != want {
				t.Errorf("%d events with usage, want %d", usages, want)
			}
		})
	}
}

func TestMessagesNoUsage(t *testing.T) {
	_, url := start(t, mockupstream.Options{NoUsage: true})
	resp, body := call(t, http.MethodPost, url+"/v1/messages", messagesBody, anthropicHeaders)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := decodeJSON[map[string]json.RawMessage](t, body)
	if _, ok := got["usage"]; ok || got["content"] == nil {
		t.Errorf("answer %s: want content and no usage", body)
	}
}

func TestMessagesErrorSchema(t *testing.T) {
	tests := []struct {
		name       string
		opts       mockupstream.Options
		method     string
		body       string
		header     http.Header
		wantStatus int
		wantType   string
	}{
		{name: "bad JSON", body: `{`, header: anthropicHeaders, wantStatus: 400, wantType: "invalid_request_error"},
		{name: "max_tokens missing", body: `{"model":"c","messages":[{"role":"user","content":"x"}]}`, header: anthropicHeaders, wantStatus: 400, wantType: "invalid_request_error"},
		{name: "max_tokens not an integer", body: `{"model":"c","max_tokens":"5","messages":[{"role":"user","content":"x"}]}`, header: anthropicHeaders, wantStatus: 400, wantType: "invalid_request_error"},
		{name: "bad role", body: `{"model":"c","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`, header: anthropicHeaders, wantStatus: 400, wantType: "invalid_request_error"},
		{name: "no content", body: `{"model":"c","max_tokens":5,"messages":[{"role":"user"}]}`, header: anthropicHeaders, wantStatus: 400, wantType: "invalid_request_error"},
		{name: "version required without a key", body: messagesBody, wantStatus: 400, wantType: "invalid_request_error"},
		{name: "no key", opts: mockupstream.Options{RequireKey: "k"}, body: messagesBody, header: anthropicHeaders, wantStatus: 401, wantType: "authentication_error"},
		{name: "wrong method", method: http.MethodGet, header: anthropicHeaders, wantStatus: 405, wantType: "invalid_request_error"},
		{name: "too large", body: strings.Repeat("x", 16<<20+1), header: anthropicHeaders, wantStatus: 413, wantType: "request_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, url := start(t, tc.opts)
			resp, body := call(t, cmpOr(tc.method, http.MethodPost), url+"/v1/messages", tc.body, tc.header)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			got := decodeJSON[anthropicErrorBody](t, body)
			if got.Type != "error" || got.Error == nil || got.Error.Type != tc.wantType || got.Error.Message == "" {
				t.Errorf("body %s, want an Anthropic %s error", body, tc.wantType)
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func TestMessagesCutStream(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	m.SetFailure(mockupstream.FailCutStream)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url+"/v1/messages",
		strings.NewReader(`{"model":"c","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Anthropic-Version", "2023-06-01")
	resp, err := freshClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, err := namedEvents(resp.Body)
	var names []string
	for _, ev := range events {
		names = append(names, ev.Name)
	}
	want := "message_start,content_block_start,ping,content_block_delta"
	if strings.Join(names, ",") != want {
		t.Errorf("events before the cut %q, want %s", names, want)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error %v, want unexpected EOF", err)
	}
}

// TestKeysNeverRecorded checks that neither credential header is recorded, on any
// endpoint.
func TestKeysNeverRecorded(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	h := http.Header{"X-Api-Key": {"secret-1"}, "Authorization": {"Bearer secret-2"}, "Anthropic-Version": {"2023-06-01"}}
	call(t, http.MethodPost, url+"/v1/chat/completions", chatBody, h)
	call(t, http.MethodPost, url+"/v1/messages", messagesBody, h)
	reqs := m.Requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests recorded", len(reqs))
	}
	for _, r := range reqs {
		if !r.HadAPIKey || !r.HadAuth || r.Header.Get("X-Api-Key") != "" || r.Header.Get("Authorization") != "" {
			t.Errorf("%s recorded %+v: want HadAPIKey, HadAuth and no key", r.Path, r)
		}
	}
}
