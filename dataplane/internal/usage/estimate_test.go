package usage

import (
	"encoding/json"
	"hash/maphash"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// fieldsOf decodes a request body into its top-level members, as the API does.
func fieldsOf(t testing.TB, body string) map[string]json.RawMessage {
	t.Helper()
	var f map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &f); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return f
}

// TestEstimatePromptMatchesOpenAI uses the example of OpenAI's cookbook ("How to
// count tokens with tiktoken"), for which the API reports 124 prompt tokens on gpt-4o.
func TestEstimatePromptMatchesOpenAI(t *testing.T) {
	body := `{"model":"gpt-4o","messages":[
		{"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
		{"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
		{"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
		{"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
		{"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
		{"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}]}`
	if got := EstimatePrompt(policy.OpChat, fieldsOf(t, body)); got != 124 {
		t.Errorf("EstimatePrompt = %d, OpenAI counts 124", got)
	}
}

func TestEstimatePromptChat(t *testing.T) {
	c := CountText
	const msg, reply = TokensPerMessage, ReplyTokens
	tools := `[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`
	tests := []struct {
		name     string
		messages string
		extra    string // more members of the body
		want     int64
	}{
		{name: "one message", messages: `[{"role":"user","content":"hello world"}]`,
			want: msg + c("user") + 2 + reply},
		{name: "unicode", messages: `[{"role":"user","content":"日本語のテキスト 👍🏽"}]`,
			want: msg + c("user") + c("日本語のテキスト 👍🏽") + reply},
		{name: "escaped text", messages: `[{"role":"user","content":"line\none \"quoted\" \u00e9"}]`,
			want: msg + c("user") + c("line\none \"quoted\" é") + reply},
		{name: "name", messages: `[{"role":"user","name":"bob","content":"hi"}]`,
			want: msg + c("user") + TokensPerName + c("bob") + c("hi") + reply},
		{name: "null content", messages: `[{"role":"assistant","content":null}]`,
			want: msg + c("assistant") + reply},
		{name: "text parts", messages: `[{"role":"user","content":[{"type":"text","text":"one two"},{"type":"text","text":"three"}]}]`,
			want: msg + c("user") + c("one two") + c("three") + reply},
		{name: "image parts", messages: `[{"role":"user","content":[{"type":"text","text":"what is this"},` +
			`{"type":"image_url","image_url":{"url":"https://example.com/a.png","detail":"high"}},{"type":"input_image","image_url":"data:x"}]}]`,
			want: msg + c("user") + c("what is this") + 2*ImageTokens + reply},
		{name: "refusal part", messages: `[{"role":"assistant","content":[{"type":"refusal","refusal":"I can't"}]}]`,
			want: msg + c("assistant") + c("I can't") + reply},
		{name: "audio part not counted", messages: `[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AAAA","format":"wav"}}]}]`,
			want: msg + c("user") + reply},
		{name: "tool calls", messages: `[{"role":"assistant","content":null,"tool_calls":[` +
			`{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},` +
			`{"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},` +
			`{"role":"tool","tool_call_id":"call_1","content":"sunny"}]`,
			want: 2*msg + c("assistant") + c("get_weather") + c(`{"city":"Paris"}`) + c("get_time") + c("{}") +
				c("tool") + c("sunny") + reply},
		{name: "legacy function_call", messages: `[{"role":"assistant","function_call":{"name":"f","arguments":"{\"a\":1}"}}]`,
			want: msg + c("assistant") + c("f") + c(`{"a":1}`) + reply},
		{name: "tools", messages: `[{"role":"user","content":"hi"}]`, extra: `,"tools":` + tools,
			want: msg + c("user") + c("hi") + reply + c(tools)},
		{name: "functions", messages: `[{"role":"user","content":"hi"}]`, extra: `,"functions":[{"name":"f"}]`,
			want: msg + c("user") + c("hi") + reply + c(`[{"name":"f"}]`)},
		{name: "null tools", messages: `[{"role":"user","content":"hi"}]`, extra: `,"tools":null`,
			want: msg + c("user") + c("hi") + reply},
		{name: "no messages", messages: `null`, want: reply},
		{name: "messages not an array", messages: `{"role":"user","content":"hi"}`, want: reply},
		{name: "message not an object", messages: `[42,"x",{"role":"user","content":"hi"}]`,
			want: msg + c("user") + c("hi") + reply},
		{name: "members of the wrong type", messages: `[{"role":7,"content":{"text":"x"},"name":false,"tool_calls":{"a":1},"function_call":"f"}]`,
			want: msg + reply},
		{name: "malformed parts and calls", messages: `[{"role":"user","content":[1,null,{"type":3,"text":"ok"}],` +
			`"tool_calls":[1,{"function":"x"},{"function":{"name":2,"arguments":"ab"}}]}]`,
			want: msg + c("user") + c("ok") + c("ab") + reply},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"gpt-4o","messages":` + tc.messages + tc.extra + `}`
			if got := EstimatePrompt(policy.OpChat, fieldsOf(t, body)); got != tc.want {
				t.Errorf("EstimatePrompt = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestEstimatePromptInputs(t *testing.T) {
	c := CountText
	tests := []struct {
		name  string
		value string
		want  int64
	}{
		{name: "string", value: `"hello world"`, want: 2},
		{name: "unicode string", value: `"café crème brûlée"`, want: c("café crème brûlée")},
		{name: "strings", value: `["hello world","日本語のテキスト"]`, want: 2 + c("日本語のテキスト")},
		{name: "token ids", value: `[1,2,3,40000]`, want: 4},
		{name: "arrays of token ids", value: `[[1,2],[3],[]]`, want: 3},
		{name: "mixed", value: `["hi",[1,2],7]`, want: c("hi") + 3},
		{name: "empty array", value: `[]`, want: 0},
		{name: "object", value: `{"text":"hi"}`, want: 0},
		{name: "number", value: `12`, want: 0},
		{name: "null", value: `null`, want: 0},
		{name: "odd elements ignored", value: `[true,null,{"a":"b"},"ok"]`, want: c("ok")},
	}
	for _, tc := range tests {
		for _, op := range []struct{ op, member string }{{policy.OpTextCompletion, "prompt"}, {policy.OpEmbeddings, "input"}} {
			t.Run(op.op+"/"+tc.name, func(t *testing.T) {
				body := `{"model":"m","` + op.member + `":` + tc.value + `}`
				if got := EstimatePrompt(op.op, fieldsOf(t, body)); got != tc.want {
					t.Errorf("EstimatePrompt = %d, want %d", got, tc.want)
				}
			})
		}
	}
	t.Run("completion suffix", func(t *testing.T) {
		f := fieldsOf(t, `{"model":"m","prompt":"def f(","suffix":"    return x"}`)
		if got, want := EstimatePrompt(policy.OpTextCompletion, f), c("def f(")+c("    return x"); got != want {
			t.Errorf("EstimatePrompt = %d, want %d", got, want)
		}
	})
}

func TestEstimatePromptMessages(t *testing.T) {
	c := CountText
	msgs := `"messages":[{"role":"user","content":[{"type":"text","text":"hello there"}]}]`
	chat := EstimatePrompt(policy.OpChat, fieldsOf(t, `{"model":"m",`+msgs+`}`))
	tests := []struct {
		name   string
		system string
		want   int64
	}{
		{name: "no system", system: ``, want: chat},
		{name: "system string", system: `,"system":"be brief"`, want: chat + c("be brief")},
		{name: "system blocks", system: `,"system":[{"type":"text","text":"be brief"},{"type":"text","text":"and kind"}]`, want: chat + c("be brief") + c("and kind")},
		{name: "system of the wrong type", system: `,"system":12`, want: chat},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"model":"m",` + msgs + tc.system + `}`
			if got := EstimatePrompt(policy.OpMessages, fieldsOf(t, body)); got != tc.want {
				t.Errorf("EstimatePrompt = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestEstimatePromptOther(t *testing.T) {
	f := fieldsOf(t, `{"model":"m","messages":[{"role":"user","content":"hi"}],"prompt":"hi","input":"hi"}`)
	tests := []struct {
		name   string
		op     string
		fields map[string]json.RawMessage
		want   int64
	}{
		{name: "unknown operation", op: "images", fields: f, want: 0},
		{name: "nil fields chat", op: policy.OpChat, fields: nil, want: ReplyTokens},
		{name: "nil fields embeddings", op: policy.OpEmbeddings, fields: nil, want: 0},
		{name: "malformed raw values", op: policy.OpEmbeddings, fields: map[string]json.RawMessage{"input": json.RawMessage(`["a",[1,2`)}, want: 0},
		{name: "malformed raw messages", op: policy.OpChat, fields: map[string]json.RawMessage{"messages": json.RawMessage(`[{"role":`)}, want: ReplyTokens},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := EstimatePrompt(tc.op, tc.fields); got != tc.want {
				t.Errorf("EstimatePrompt = %d, want %d", got, tc.want)
			}
		})
	}
}

// FuzzEstimatePrompt checks that no request body makes EstimatePrompt panic or
// return a negative count.
func FuzzEstimatePrompt(f *testing.F) {
	f.Add(`{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}],"tool_calls":[{"function":{"name":"a","arguments":"{}"}}]}],"tools":[]}`)
	f.Add(`{"prompt":[[1,2],"x",3],"input":["a",[4]]}`)
	f.Fuzz(func(t *testing.T, body string) {
		var fields map[string]json.RawMessage
		if json.Unmarshal([]byte(body), &fields) != nil {
			fields = map[string]json.RawMessage{"messages": json.RawMessage(body), "prompt": json.RawMessage(body), "input": json.RawMessage(body)}
		}
		for _, op := range policy.Operations {
			if n := EstimatePrompt(op, fields); n < 0 {
				t.Fatalf("EstimatePrompt(%s) = %d", op, n)
			}
		}
	})
}

func TestEstimatePromptBeyondTheTokenizeBudget(t *testing.T) {
	word := "lorem ipsum dolor sit amet, "
	small := strings.Repeat(word, 100)
	big := strings.Repeat(word, 4*tokenizeBudget/len(word))
	perByte := float64(CountText(small)) / float64(len(small))
	body := func(text string) map[string]json.RawMessage {
		raw, err := json.Marshal(text)
		if err != nil {
			t.Fatal(err)
		}
		return map[string]json.RawMessage{"input": raw}
	}
	got := EstimatePrompt(policy.OpEmbeddings, body(big))
	want := perByte * float64(len(big))
	if float64(got) < 0.95*want || float64(got) > 1.05*want {
		t.Fatalf("estimate of %d bytes: %d tokens, want about %.0f (the measured rate)", len(big), got, want)
	}
	if exact := EstimatePrompt(policy.OpEmbeddings, body(small)); exact != CountText(small) {
		t.Fatalf("estimate within the budget %d, want the exact count %d", exact, CountText(small))
	}
}

func TestCountCache(t *testing.T) {
	c := newCountCache()
	long := strings.Repeat("counted once, then remembered. ", 4)
	if got, want := c.count(long), CountText(long); got != want {
		t.Fatalf("first count %d, want %d", got, want)
	}
	if got, want := c.count(long), CountText(long); got != want {
		t.Fatalf("cached count %d, want %d", got, want)
	}
	// Fill the text's shard past two generations: it is forgotten, then counted again.
	h := maphash.String(c.seed, long)
	sh := &c.shards[h%cacheShards]
	for i := range 2 * cacheShardEntries {
		sh.mu.Lock()
		sh.put(uint64(i)*cacheShards+h%cacheShards+cacheShards<<40, 1)
		sh.mu.Unlock()
	}
	sh.mu.Lock()
	_, inCur := sh.cur[h]
	_, inPrev := sh.prev[h]
	sh.mu.Unlock()
	if inCur || inPrev {
		t.Fatal("the cache kept a count past two full generations")
	}
	if got, want := c.count(long), CountText(long); got != want {
		t.Fatalf("recount %d, want %d", got, want)
	}
	if short := "short"; c.count(short) != CountText(short) {
		t.Fatal("short text miscounted")
	}
}
