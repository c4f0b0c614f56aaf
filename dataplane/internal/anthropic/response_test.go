package anthropic

import (
	"strings"
	"testing"
)

func TestMessageToChatCompletion(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{
			name: "text, end_turn",
			body: `{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022",
				"content":[{"type":"text","text":"Hello"},{"type":"text","text":" world"}],
				"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":3}}`,
			want: `{"id":"chatcmpl-msg_1","object":"chat.completion","created":1700000000,"model":"claude-3-5-sonnet",
				"choices":[{"index":0,"message":{"role":"assistant","content":"Hello world","refusal":null},"logprobs":null,"finish_reason":"stop"}],
				"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "stop_sequence and cache tokens",
			body: `{"id":"msg_2","type":"message","content":[{"type":"text","text":"a"}],"stop_reason":"stop_sequence","stop_sequence":"END",
				"usage":{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":1000,"output_tokens":1}}`,
			want: `{"id":"chatcmpl-msg_2","object":"chat.completion","created":1700000000,"model":"claude-3-5-sonnet",
				"choices":[{"index":0,"message":{"role":"assistant","content":"a","refusal":null},"logprobs":null,"finish_reason":"stop"}],
				"usage":{"prompt_tokens":1105,"completion_tokens":1,"total_tokens":1106,"prompt_tokens_details":{"cached_tokens":1000}}}`,
		},
		{
			name: "max_tokens",
			body: `{"id":"msg_3","type":"message","content":[{"type":"text","text":"cut"}],"stop_reason":"max_tokens","usage":{"input_tokens":1,"output_tokens":2}}`,
			want: `{"id":"chatcmpl-msg_3","object":"chat.completion","created":1700000000,"model":"claude-3-5-sonnet",
				"choices":[{"index":0,"message":{"role":"assistant","content":"cut","refusal":null},"logprobs":null,"finish_reason":"length"}],
				"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "tool calls without text",
			body: `{"id":"msg_4","type":"message","content":[
				{"type":"thinking","thinking":"hmm","signature":"s"},
				{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{ "city" : "Paris" }},
				{"type":"tool_use","id":"toolu_2","name":"now","input":{}}],
				"stop_reason":"tool_use","usage":{"input_tokens":20,"output_tokens":30}}`,
			want: `{"id":"chatcmpl-msg_4","object":"chat.completion","created":1700000000,"model":"claude-3-5-sonnet",
				"choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":null,"tool_calls":[
					{"id":"toolu_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
					{"id":"toolu_2","type":"function","function":{"name":"now","arguments":"{}"}}]},
				"logprobs":null,"finish_reason":"tool_calls"}],
				"usage":{"prompt_tokens":20,"completion_tokens":30,"total_tokens":50,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "text and a tool call",
			body: `{"id":"msg_5","type":"message","content":[{"type":"text","text":"Let me check."},
				{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":[1,2]}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"output_tokens":1}}`,
			want: `{"id":"chatcmpl-msg_5","object":"chat.completion","created":1700000000,"model":"claude-3-5-sonnet",
				"choices":[{"index":0,"message":{"role":"assistant","content":"Let me check.","refusal":null,"tool_calls":[
					{"id":"toolu_1","type":"function","function":{"name":"f","arguments":"{\"a\":[1,2]}"}}]},
				"logprobs":null,"finish_reason":"tool_calls"}],
				"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
		{
			name: "refusal and empty content",
			body: `{"id":"msg_6","type":"message","content":[],"stop_reason":"refusal","usage":{"input_tokens":1,"output_tokens":0}}`,
			want: `{"id":"chatcmpl-msg_6","object":"chat.completion","created":1700000000,"model":"claude-3-5-sonnet",
				"choices":[{"index":0,"message":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":"content_filter"}],
				"usage":{"prompt_tokens":1,"completion_tokens":0,"total_tokens":1,"prompt_tokens_details":{"cached_tokens":0}}}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := messageToChatCompletion([]byte(tc.body), "claude-3-5-sonnet", 1700000000)
			if err != nil {
				t.Fatalf("messageToChatCompletion: %v", err)
			}
			assertJSON(t, got, tc.want)
		})
	}
}

func TestMessageToChatCompletionRejects(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"not JSON", `{"id":`},
		{"an error body", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`},
		{"tool input not an object", `{"type":"message","content":[{"type":"tool_use","id":"t","name":"f","input":[1]}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := MessageToChatCompletion([]byte(tc.body), "m"); err == nil {
				t.Fatalf("got %s, want an error", out)
			}
		})
	}
}

func TestFinishReason(t *testing.T) {
	tests := map[string]string{
		"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "": "stop",
		"max_tokens": "length", "model_context_window_exceeded": "length",
		"tool_use": "tool_calls", "refusal": "content_filter",
	}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			if got := finishReason(in); got != want {
				t.Errorf("finishReason(%q) = %q, want %q", in, got, want)
			}
		})
	}
}

func TestMessageToChatCompletionCreatedIsNow(t *testing.T) {
	out, err := MessageToChatCompletion([]byte(`{"id":"m","type":"message","content":[]}`), "x")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), `"created":0`) {
		t.Errorf("created not set: %s", out)
	}
}
