package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
)

const created = 1700000000

// translateAll feeds every event of an Anthropic stream through tr, as the relay
// will, and returns everything written to the client, the first error, and whether
// events were left over after it.
func translateAll(t testing.TB, tr *StreamTranslator, stream string) (string, error) {
	t.Helper()
	events := upstream.NewEventReader(strings.NewReader(stream), upstream.MaxEventBytes)
	defer events.Release()
	var out bytes.Buffer
	for {
		ev, err := events.Next()
		if errors.Is(err, io.EOF) {
			return out.String(), nil
		}
		if err != nil {
			t.Fatalf("reading the test stream: %v", err)
		}
		b, err := tr.Translate(ev)
		out.Write(b)
		if err != nil {
			return out.String(), err
		}
	}
}

func newTranslator(includeUsage bool) *StreamTranslator {
	tr := NewStreamTranslator("claude-3-5-sonnet", includeUsage)
	tr.created = created
	return tr
}

const chunkPrefix = `data: {"id":"chatcmpl-msg_01","object":"chat.completion.chunk","created":1700000000,"model":"claude-3-5-sonnet","choices":[`

func chunk(delta, finish string) string {
	return chunkPrefix + `{"index":0,"delta":` + delta + `,"logprobs":null,"finish_reason":` + finish + "}]}\n\n"
}

func TestStreamTranslatorConversation(t *testing.T) {
	conversation, err := os.ReadFile("testdata/conversation.sse")
	if err != nil {
		t.Fatal(err)
	}
	body := chunk(`{"role":"assistant","content":"","refusal":null}`, "null") +
		chunk(`{"content":"Let me \"check\""}`, "null") +
		chunk(`{"content":".\n"}`, "null") +
		chunk(`{"tool_calls":[{"index":0,"id":"toolu_01","type":"function","function":{"name":"get_weather","arguments":""}}]}`, "null") +
		chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\": "}}]}`, "null") +
		chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}`, "null") +
		chunk(`{"tool_calls":[{"index":1,"id":"toolu_02","type":"function","function":{"name":"now","arguments":""}}]}`, "null") +
		chunk(`{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}`, "null") +
		chunk(`{}`, `"tool_calls"`)
	usageChunk := chunkPrefix + `],"usage":{"prompt_tokens":125,"completion_tokens":42,"total_tokens":167,"prompt_tokens_details":{"cached_tokens":100}}}` + "\n\n"

	tests := []struct {
		name         string
		includeUsage bool
		want         string
	}{
		{"with usage", true, body + usageChunk + "data: [DONE]\n\n"},
		{"without usage", false, body + "data: [DONE]\n\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTranslator(tc.includeUsage)
			got, err := translateAll(t, tr, string(conversation))
			if err != nil {
				t.Fatalf("Translate: %v", err)
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			assertChunksAreJSON(t, got)
			if !tr.Done() {
				t.Error("Done() = false after message_stop")
			}
			prompt, completion, ok := tr.Usage()
			if !ok || prompt != 125 || completion != 42 {
				t.Errorf("Usage() = %d, %d, %v; want 125, 42, true", prompt, completion, ok)
			}
		})
	}
}

// assertChunksAreJSON checks that every data line but [DONE] holds one JSON value.
func assertChunksAreJSON(t testing.TB, stream string) {
	t.Helper()
	for ev := range strings.SplitSeq(stream, "\n\n") {
		if ev == "" {
			continue
		}
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("not one data line: %q", ev)
		}
		if data != "[DONE]" && !json.Valid([]byte(data)) {
			t.Fatalf("not JSON: %q", data)
		}
	}
}

func TestStreamTranslatorEvents(t *testing.T) {
	const start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n"
	role := chunk(`{"role":"assistant","content":"","refusal":null}`, "null")
	tests := []struct {
		name           string
		stream         string
		want           string
		wantErr        string // the code of the *StreamError, "" for none
		wantDone       bool
		wantPrompt     int64
		wantCompletion int64
	}{
		{
			name: "stop reasons: max_tokens is length",
			stream: start + "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":5}}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
			want:     role + chunk(`{}`, `"length"`) + "data: [DONE]\n\n",
			wantDone: true, wantPrompt: 10, wantCompletion: 5,
		},
		{
			name:     "stop reasons: end_turn is stop, cumulative input in message_delta",
			stream:   start + "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":7,\"output_tokens\":6}}\n\ndata: {\"type\":\"message_stop\"}\n\n",
			want:     role + chunk(`{}`, `"stop"`) + "data: [DONE]\n\n",
			wantDone: true, wantPrompt: 17, wantCompletion: 6,
		},
		{
			name:     "message_stop without message_delta still finishes",
			stream:   start + "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
			want:     role + chunk(`{}`, `"stop"`) + "data: [DONE]\n\n",
			wantDone: true, wantPrompt: 10, wantCompletion: 1,
		},
		{
			name: "error mid-stream ends without [DONE]",
			stream: start + "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n" +
				"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
			want: role + chunk(`{"content":"Hi"}`, "null") +
				`data: {"error":{"message":"the upstream is overloaded; retry later","type":"service_unavailable","param":null,"code":"upstream_unavailable"}}` + "\n\n",
			wantErr: "upstream_unavailable", wantPrompt: 10, wantCompletion: 1,
		},
		{
			name:    "malformed JSON",
			stream:  start + "event: content_block_delta\ndata: {\"type\":\n\n",
			want:    role + `data: {"error":{"message":"the upstream stream was malformed","type":"server_error","param":null,"code":"upstream_error"}}` + "\n\n",
			wantErr: "upstream_error", wantPrompt: 10, wantCompletion: 1,
		},
		{
			name:    "content before message_start",
			stream:  "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
			want:    `data: {"error":{"message":"the upstream stream was malformed","type":"server_error","param":null,"code":"upstream_error"}}` + "\n\n",
			wantErr: "upstream_error",
		},
		{
			name:    "second message_start",
			stream:  start + start,
			want:    role + `data: {"error":{"message":"the upstream stream was malformed","type":"server_error","param":null,"code":"upstream_error"}}` + "\n\n",
			wantErr: "upstream_error", wantPrompt: 10, wantCompletion: 1,
		},
		{
			name: "comments, CRLF, multi-line data, unknown events and deltas",
			stream: ": keep-alive\n\n" + start +
				"event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\r\ndata: \"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\r\n\r\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n" +
				"event: brand_new\ndata: {\"type\":\"brand_new\"}\n\n" +
				"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"<b>&\u2028\"}}\n\n",
			want:       role + chunk(`{"content":"<b>&\u2028"}`, "null"),
			wantPrompt: 10, wantCompletion: 1,
		},
		{
			name: "tool input on the start block",
			stream: start + "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"f\",\"input\":{\"a\": 1}}}\n\n" +
				"data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
			want: role + chunk(`{"tool_calls":[{"index":0,"id":"t1","type":"function","function":{"name":"f","arguments":""}}]}`, "null") +
				chunk(`{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":1}"}}]}`, "null"),
			wantPrompt: 10, wantCompletion: 1,
		},
		{
			name: "events after [DONE] are ignored",
			stream: start + "data: {\"type\":\"message_stop\"}\n\n" +
				"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"late\"}}\n\n",
			want:     role + chunk(`{}`, `"stop"`) + "data: [DONE]\n\n",
			wantDone: true, wantPrompt: 10, wantCompletion: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTranslator(false)
			got, err := translateAll(t, tr, tc.stream)
			var se *StreamError
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Translate: %v", err)
			case tc.wantErr != "" && (!errors.As(err, &se) || se.Code != tc.wantErr):
				t.Fatalf("err = %v, want a *StreamError with code %s", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			assertChunksAreJSON(t, got)
			if tr.Done() != tc.wantDone {
				t.Errorf("Done() = %v, want %v", tr.Done(), tc.wantDone)
			}
			if p, c, _ := tr.Usage(); p != tc.wantPrompt || c != tc.wantCompletion {
				t.Errorf("Usage() = %d, %d; want %d, %d", p, c, tc.wantPrompt, tc.wantCompletion)
			}
		})
	}
}
