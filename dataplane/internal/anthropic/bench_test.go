package anthropic

import (
	"testing"
)

// BenchmarkStreamTranslator measures one event of each common kind through a
// translator that is already under way.
func BenchmarkStreamTranslator(b *testing.B) {
	const start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-3-5-sonnet-20241022\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
	const toolStart = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n"
	benches := []struct {
		name  string
		event string
	}{
		{"text_delta", "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"The quick brown fox jumps over the lazy dog.\"}}\n\n"},
		{"input_json_delta", "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Par\"}}\n\n"},
		{"ping", "event: ping\ndata: {\"type\": \"ping\"}\n\n"},
		{"message_delta", "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n"},
	}
	for _, bc := range benches {
		b.Run(bc.name, func(b *testing.B) {
			tr := NewStreamTranslator("claude-3-5-sonnet", true)
			for _, ev := range []string{start, toolStart} {
				if _, err := tr.Translate([]byte(ev)); err != nil {
					b.Fatal(err)
				}
			}
			event := []byte(bc.event)
			b.SetBytes(int64(len(event)))
			b.ReportAllocs()
			for b.Loop() {
				tr.finished = false // message_delta finishes once
				if _, err := tr.Translate(event); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkChatRequestToMessages measures a small multi-turn request with a tool.
func BenchmarkChatRequestToMessages(b *testing.B) {
	body := fields(b, `{"model":"claude-3-5-sonnet","stream":true,"max_tokens":256,"messages":[
		{"role":"system","content":"You are terse."},{"role":"user","content":"Weather in Paris?"},
		{"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
		{"role":"tool","tool_call_id":"call_1","content":"18C"}],
		"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ChatRequestToMessages(body, "claude-3-5-sonnet-20241022", 1024); err != nil {
			b.Fatal(err)
		}
	}
}
