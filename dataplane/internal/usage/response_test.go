package usage

import "testing"

func TestFromResponse(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		want   Usage
		wantOK bool
	}{
		{name: "chat", body: `{"id":"x","object":"chat.completion","choices":[{"message":{"role":"assistant","content":"hi"}}],` +
			`"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":0}}}`,
			want: Usage{12, 3, 15}, wantOK: true},
		{name: "embeddings", body: `{"object":"list","data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}`,
			want: Usage{8, 0, 8}, wantOK: true},
		{name: "no total", body: `{"usage":{"prompt_tokens":5,"completion_tokens":2}}`, want: Usage{5, 2, 7}, wantOK: true},
		{name: "no completion", body: `{"usage":{"prompt_tokens":5,"total_tokens":9}}`, want: Usage{5, 4, 9}, wantOK: true},
		{name: "no prompt", body: `{"usage":{"completion_tokens":5,"total_tokens":9}}`, want: Usage{4, 5, 9}, wantOK: true},
		{name: "float counts", body: `{"usage":{"prompt_tokens":5.0,"completion_tokens":2e0,"total_tokens":7}}`, want: Usage{5, 2, 7}, wantOK: true},
		{name: "negative and huge counts", body: `{"usage":{"prompt_tokens":-5,"completion_tokens":1e300,"total_tokens":1}}`,
			want: Usage{0, maxCount, 1}, wantOK: true},
		{name: "a count of the wrong type", body: `{"usage":{"prompt_tokens":"5","completion_tokens":2}}`, want: Usage{0, 2, 2}, wantOK: true},
		{name: "last usage wins", body: `{"usage":{"prompt_tokens":1},"usage":{"prompt_tokens":2}}`, want: Usage{2, 0, 2}, wantOK: true},
		{name: "nested usage is not the response's", body: `{"choices":[{"usage":{"prompt_tokens":1}}]}`},
		{name: "no usage", body: `{"choices":[{"message":{"content":"hi"}}]}`},
		{name: "null usage", body: `{"usage":null}`},
		{name: "empty usage", body: `{"usage":{}}`},
		{name: "usage not an object", body: `{"usage":[1,2,3]}`},
		{name: "case matters", body: `{"Usage":{"prompt_tokens":1}}`},
		{name: "escaped name", body: `{"\u0075sage":{"prompt_tokens":3}}`, want: Usage{3, 0, 3}, wantOK: true},
		{name: "not JSON", body: `<html>bad gateway</html>`},
		{name: "truncated", body: `{"usage":{"prompt_tokens":12,"completion_tokens":3`},
		{name: "array", body: `[{"usage":{"prompt_tokens":1}}]`},
		{name: "empty", body: ``},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := FromResponse([]byte(tc.body))
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("FromResponse = %+v, %v; want %+v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCompletionText(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{name: "chat", body: `{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"}}]}`, want: "Hello there"},
		{name: "unicode and escapes", body: `{"choices":[{"message":{"content":"caf\u00e9 \"ok\"\n日本"}}]}`, want: "café \"ok\"\n日本"},
		{name: "several choices", body: `{"choices":[{"message":{"content":"a"}},{"message":{"content":"b"}}]}`, want: "ab"},
		{name: "completion", body: `{"object":"text_completion","choices":[{"text":"one"},{"text":" two"}]}`, want: "one two"},
		{name: "tool calls", body: `{"choices":[{"message":{"content":null,"tool_calls":[` +
			`{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]}}]}`,
			want: `get_weather{"city":"Paris"}`},
		{name: "function call", body: `{"choices":[{"message":{"function_call":{"name":"f","arguments":"{}"}}}]}`, want: "f{}"},
		{name: "refusal", body: `{"choices":[{"message":{"content":null,"refusal":"I can't help with that."}}]}`, want: "I can't help with that."},
		{name: "reasoning", body: `{"choices":[{"message":{"reasoning_content":"think","content":"answer"}}]}`, want: "answerthink"},
		{name: "content parts", body: `{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}`, want: "ab"},
		{name: "wrong types skipped", body: `{"choices":[{"message":{"content":5,"tool_calls":"x"},"text":["y"]},"z",{"text":"ok"}]}`, want: "ok"},
		{name: "embeddings", body: `{"object":"list","data":[{"embedding":[0.1]}]}`, want: ""},
		{name: "not JSON", body: `not json`, want: ""},
		{name: "truncated", body: `{"choices":[{"message":{"content":"Hello`, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := CompletionText([]byte(tc.body)); got != tc.want {
				t.Errorf("CompletionText = %q, want %q", got, tc.want)
			}
		})
	}
}
