package usage

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

func BenchmarkStreamMeterObserve(b *testing.B) {
	// A real gpt-4o delta chunk, with and without the "usage":null that OpenAI adds
	// to every chunk when asked for usage (which the gateway always does).
	plain := []byte(`data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":[{"index":0,"delta":{"content":" quick"},"logprobs":null,"finish_reason":null}]}` + "\n\n")
	withNull := []byte(strings.Replace(string(plain), `}]}`, `}],"usage":null}`, 1))
	usage := []byte(`data: {"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_f9f4fb6dbf","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}` + "\n\n")
	for _, bc := range []struct {
		name string
		ev   []byte
	}{{"delta", plain}, {"delta usage null", withNull}, {"usage chunk hidden", usage}} {
		b.Run(bc.name, func(b *testing.B) {
			m := NewStreamMeter(true)
			b.SetBytes(int64(len(bc.ev)))
			b.ReportAllocs()
			for b.Loop() {
				if len(m.text) > 1<<20 {
					m.text = m.text[:0]
				}
				_ = m.Observe(bc.ev)
			}
		})
	}
}

func BenchmarkEstimatePromptChat(b *testing.B) {
	body := `{"model":"gpt-4o","messages":[` +
		`{"role":"system","content":"You are a concise assistant for an online bookshop. Answer questions about orders, shipping and returns. If you do not know, say so and offer to connect the customer with a human agent."},` +
		`{"role":"user","content":"Hi! I ordered two books last Tuesday, order 48213, and the tracking page still says the parcel is being prepared. Can you tell me when it will ship?"},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"call_abc","type":"function","function":{"name":"get_order","arguments":"{\"order_id\":\"48213\"}"}}]},` +
		`{"role":"tool","tool_call_id":"call_abc","content":"{\"status\":\"packing\",\"items\":2,\"carrier\":\"DHL\",\"eta\":\"2025-03-14\"}"},` +
		`{"role":"assistant","content":"Your order 48213 is being packed and should ship with DHL; the estimated delivery date is 14 March."},` +
		`{"role":"user","content":"Great, thanks. And if one of the books arrives damaged, how do I return it?"}],` +
		`"tools":[{"type":"function","function":{"name":"get_order","description":"Look up an order","parameters":{"type":"object","properties":{"order_id":{"type":"string"}},"required":["order_id"]}}}],` +
		`"max_tokens":300}`
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &fields); err != nil {
		b.Fatal(err)
	}
	Warm()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.Run("repeated", func(b *testing.B) { // the counts come from the cache
		for b.Loop() {
			EstimatePrompt(policy.OpChat, fields)
		}
	})
	b.Run("new", func(b *testing.B) { // every text is counted afresh
		for b.Loop() {
			counts = newCountCache()
			EstimatePrompt(policy.OpChat, fields)
		}
	})
}

func BenchmarkCountText(b *testing.B) {
	text := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 23) // ~1 KB
	Warm()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		CountText(text)
	}
}
