package anthropic

import (
	"errors"
	"testing"
)

func TestChatRequestToMessages(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
	}{
		{
			name: "system prompt and defaults",
			body: `{"model":"claude-3-5-sonnet","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}`,
			want: `{"model":"claude-3-5-sonnet-20241022","system":"Be brief.","max_tokens":1024,
				"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`,
		},
		{
			name: "system and developer messages joined, text parts",
			body: `{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":"One."},{"type":"text","text":"Two."}]},
				{"role":"user","content":"Hi"},{"role":"developer","content":"Three."}]}`,
			want: `{"model":"claude-3-5-sonnet-20241022","system":"One.\n\nTwo.\n\nThree.","max_tokens":1024,
				"messages":[{"role":"user","content":[{"type":"text","text":"Hi"}]}]}`,
		},
		{
			name: "multi-turn with consecutive roles merged and empty content dropped",
			body: `{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":[{"type":"text","text":"b"}]},
				{"role":"assistant","content":"c"},{"role":"assistant","content":""},{"role":"assistant","content":null,"tool_calls":[]},
				{"role":"user","content":"d"}]}`,
			want: `{"model":"claude-3-5-sonnet-20241022","max_tokens":1024,"messages":[
				{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
				{"role":"assistant","content":[{"type":"text","text":"c"}]},
				{"role":"user","content":[{"type":"text","text":"d"}]}]}`,
		},
		{
			name: "images from data and https URLs",
			body: `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},
				{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
				{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}}]}]}`,
			want: `{"model":"claude-3-5-sonnet-20241022","max_tokens":1024,"messages":[{"role":"user","content":[
				{"type":"text","text":"What is this?"},
				{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
				{"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}]}]}`,
		},
		{
			name: "tool calls and tool results",
			body: `{"model":"m","messages":[{"role":"user","content":"Weather in Paris and Rome?"},
				{"role":"assistant","content":"Checking.","tool_calls":[
					{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}},
					{"id":"call_2","type":"function","function":{"name":"get_weather","arguments":""}}]},
				{"role":"tool","tool_call_id":"call_1","content":"18C"},
				{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"21C"}]},
				{"role":"user","content":"Thanks"}],
				"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather now","parameters":{"type":"object","properties":{"city":{"type":"string"}}},"strict":true}},
					{"type":"function","function":{"name":"now"}}],
				"tool_choice":"required","parallel_tool_calls":false}`,
			want: `{"model":"claude-3-5-sonnet-20241022","max_tokens":1024,"messages":[
				{"role":"user","content":[{"type":"text","text":"Weather in Paris and Rome?"}]},
				{"role":"assistant","content":[{"type":"text","text":"Checking."},
					{"type":"tool_use","id":"call_1","name":"get_weather","input":{"city":"Paris"}},
					{"type":"tool_use","id":"call_2","name":"get_weather","input":{}}]},
				{"role":"user","content":[
					{"type":"tool_result","tool_use_id":"call_1","content":[{"type":"text","text":"18C"}]},
					{"type":"tool_result","tool_use_id":"call_2","content":[{"type":"text","text":"21C"}]},
					{"type":"text","text":"Thanks"}]}],
				"tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}},
					{"name":"now","input_schema":{"type":"object","properties":{}}}],
				"tool_choice":{"type":"any","disable_parallel_tool_use":true}}`,
		},
		{
			name: "tool_choice function",
			body: `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
				"tool_choice":{"type":"function","function":{"name":"f"}}}`,
			want: `{"model":"claude-3-5-sonnet-20241022","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"tool","name":"f"}}`,
		},
		{
			name: "tool_choice auto and none",
			body: `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none","parallel_tool_calls":false}`,
			want: `{"model":"claude-3-5-sonnet-20241022","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}],
				"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"none"}}`,
		},
		{
			name: "tool_choice without tools is dropped",
			body: `{"model":"m","messages":[{"role":"user","content":"x"}],"tool_choice":"auto"}`,
			want: `{"model":"claude-3-5-sonnet-20241022","max_tokens":1024,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		},
		{
			name: "sampling, stop, stream, user, defaults of refused fields",
			body: `{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":50,"max_completion_tokens":100,
				"temperature":0.2,"top_p":0.9,"stop":["END","","STOP"],"stream":true,"stream_options":{"include_usage":true},
				"user":"u-42","n":1,"logprobs":false,"response_format":{"type":"text"},"presence_penalty":0,"seed":7,"store":false}`,
			want: `{"model":"claude-3-5-sonnet-20241022","max_tokens":100,"temperature":0.2,"top_p":0.9,"stop_sequences":["END","STOP"],
				"stream":true,"metadata":{"user_id":"u-42"},"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		},
		{
			name: "stop as a string and max_tokens alone",
			body: `{"model":"m","messages":[{"role":"user","content":"x"}],"stop":"\n\n","max_tokens":7,"stream":false,"temperature":null}`,
			want: `{"model":"claude-3-5-sonnet-20241022","max_tokens":7,"stop_sequences":["\n\n"],"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ChatRequestToMessages(fields(t, tc.body), "claude-3-5-sonnet-20241022", 1024)
			if err != nil {
				t.Fatalf("ChatRequestToMessages: %v", err)
			}
			assertJSON(t, got, tc.want)
		})
	}
}

func TestChatRequestToMessagesRefuses(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"x"}]`
	tests := []struct {
		name      string
		body      string
		wantParam string
	}{
		{"n above one", `{` + msgs + `,"n":2}`, "n"},
		{"logprobs", `{` + msgs + `,"logprobs":true}`, "logprobs"},
		{"top_logprobs", `{` + msgs + `,"top_logprobs":3}`, "top_logprobs"},
		{"json_schema response format", `{` + msgs + `,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}}}`, "response_format"},
		{"json_object response format", `{` + msgs + `,"response_format":{"type":"json_object"}}`, "response_format"},
		{"frequency penalty", `{` + msgs + `,"frequency_penalty":0.5}`, "frequency_penalty"},
		{"logit bias", `{` + msgs + `,"logit_bias":{"50256":-100}}`, "logit_bias"},
		{"audio output", `{` + msgs + `,"modalities":["text","audio"]}`, "modalities"},
		{"reasoning effort", `{` + msgs + `,"reasoning_effort":"high"}`, "reasoning_effort"},
		{"legacy functions", `{` + msgs + `,"functions":[{"name":"f"}]}`, "functions"},
		{"unknown field", `{` + msgs + `,"zzz":1,"frobnicate":true}`, "frobnicate"},
		{"temperature above one", `{` + msgs + `,"temperature":1.5}`, "temperature"},
		{"temperature not a number", `{` + msgs + `,"temperature":"hot"}`, "temperature"},
		{"max_tokens zero", `{` + msgs + `,"max_tokens":0}`, "max_tokens"},
		{"max_completion_tokens fraction", `{` + msgs + `,"max_completion_tokens":1.5}`, "max_completion_tokens"},
		{"stop of numbers", `{` + msgs + `,"stop":[1]}`, "stop"},
		{"no messages", `{"messages":[]}`, "messages"},
		{"only a system message", `{"messages":[{"role":"system","content":"x"}]}`, "messages"},
		{"unknown role", `{"messages":[{"role":"function","content":"x"}]}`, "messages[0].role"},
		{"tool message without id", `{"messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id"},
		{"bad tool arguments", `{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}`, "messages[0].tool_calls[0].function.arguments"},
		{"tool arguments not an object", `{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`, "messages[0].tool_calls[0].function.arguments"},
		{"audio input", `{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}`, "messages[0].content[0].type"},
		{"image in a system message", `{"messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},{"role":"user","content":"x"}]}`, "messages[0].content[0].type"},
		{"svg data URL", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/svg+xml;base64,PHN2Zz4="}}]}]}`, "messages[0].content[0].image_url.url"},
		{"data URL not base64", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}`, "messages[0].content[0].image_url.url"},
		{"file URL", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"file:///etc/passwd"}}]}]}`, "messages[0].content[0].image_url.url"},
		{"content of a number", `{"messages":[{"role":"user","content":5}]}`, "messages[0].content"},
		{"custom tool", `{` + msgs + `,"tools":[{"type":"custom","custom":{"name":"x"}}]}`, "tools[0].type"},
		{"tool_choice unknown", `{` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}`, "tool_choice"},
		{"legacy assistant function_call", `{"messages":[{"role":"assistant","function_call":{"name":"f","arguments":"{}"}}]}`, "messages[0].function_call"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := ChatRequestToMessages(fields(t, tc.body), "claude", 1024)
			var pe *ParamError
			if !errors.As(err, &pe) {
				t.Fatalf("got %s, %v; want a *ParamError", out, err)
			}
			if pe.Param != tc.wantParam {
				t.Errorf("param = %q, want %q (message %q)", pe.Param, tc.wantParam, pe.Message)
			}
			if pe.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestChatRequestToMessagesNeedsMaxTokens(t *testing.T) {
	_, err := ChatRequestToMessages(fields(t, `{"messages":[{"role":"user","content":"x"}]}`), "claude", 0)
	var pe *ParamError
	if !errors.As(err, &pe) || pe.Param != "max_tokens" {
		t.Fatalf("err = %v, want a ParamError on max_tokens", err)
	}
}
