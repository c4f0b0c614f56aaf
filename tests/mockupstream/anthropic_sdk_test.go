package mockupstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// anthropicClient returns an official SDK client for the mock at url that sends key in
// x-api-key. SDK v2.15.0's option.WithAPIKey sends "Authorization: Bearer <key>", which
// the mock (like the gateway's upstream call to Anthropic) does not take for a key, so
// the header is swapped; the "bearer only" case checks that the mock refuses it.
func anthropicClient(url, key string, extra ...option.RequestOption) anthropic.Client {
	opts := []option.RequestOption{
		option.WithBaseURL(url),
		option.WithAPIKey(key),
		option.WithHeaderDel("Authorization"),
		option.WithHeader("X-Api-Key", key),
		option.WithMaxRetries(0),
	}
	return anthropic.NewClient(append(opts, extra...)...)
}

func weatherTool() []anthropic.ToolUnionParam {
	return []anthropic.ToolUnionParam{anthropic.ToolUnionParamOfTool(anthropic.ToolInputSchemaParam{
		Properties: map[string]any{"city": map[string]any{"type": "string"}},
		Required:   []string{"city"},
	}, "get_weather")}
}

// accumulate reads a stream to its end into a Message, returning the event types seen
// and the stream's error.
func accumulate(t *testing.T, stream interface {
	Next() bool
	Current() anthropic.MessageStreamEventUnion
	Err() error
	Close() error
}) (anthropic.Message, []string, error) {
	t.Helper()
	defer stream.Close()
	var msg anthropic.Message
	var types []string
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		if err := msg.Accumulate(ev); err != nil {
			t.Fatalf("accumulate %s: %v", ev.Type, err)
		}
	}
	return msg, types, stream.Err()
}

// TestAnthropicSDK checks /v1/messages against the official Anthropic SDK.
func TestAnthropicSDK(t *testing.T) {
	const key = "sdk-anthropic-key"
	m, url := start(t, mockupstream.Options{Name: "sdk", RequireKey: key})
	client := anthropicClient(url, key)
	ctx := context.Background()
	params := anthropic.MessageNewParams{
		Model:     "claude-3-5-sonnet",
		MaxTokens: 100,
		System:    []anthropic.TextBlockParam{{Text: "be brief"}},
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello there"))},
	}
	const reply = "mock reply from sdk to 1 messages"

	t.Run("message", func(t *testing.T) {
		msg, err := client.Messages.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Content) != 1 || msg.Content[0].Type != "text" || msg.Content[0].Text != reply {
			t.Fatalf("content %+v", msg.Content)
		}
		if msg.StopReason != anthropic.StopReasonEndTurn || msg.Model != "claude-3-5-sonnet" || msg.ID == "" {
			t.Errorf("stop_reason %q model %q id %q", msg.StopReason, msg.Model, msg.ID)
		}
		// input: "be brief" 2 + "hello there" 2 + 1 message; output: 7 words.
		if msg.Usage.InputTokens != 5 || msg.Usage.OutputTokens != 7 {
			t.Errorf("usage %+v", msg.Usage)
		}
	})

	t.Run("max_tokens cuts the reply", func(t *testing.T) {
		p := params
		p.MaxTokens = 3
		msg, err := client.Messages.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Content[0].Text != "mock reply from" || msg.StopReason != anthropic.StopReasonMaxTokens || msg.Usage.OutputTokens != 3 {
			t.Errorf("text %q stop_reason %q usage %+v", msg.Content[0].Text, msg.StopReason, msg.Usage)
		}
	})

	t.Run("stream", func(t *testing.T) {
		msg, types, err := accumulate(t, client.Messages.NewStreaming(ctx, params))
		if err != nil {
			t.Fatal(err)
		}
		if len(msg.Content) != 1 || msg.Content[0].Text != reply {
			t.Fatalf("accumulated content %+v", msg.Content)
		}
		if msg.StopReason != anthropic.StopReasonEndTurn || msg.Usage.InputTokens != 5 || msg.Usage.OutputTokens != 7 {
			t.Errorf("stop_reason %q usage %+v", msg.StopReason, msg.Usage)
		}
		// The SDK skips ping; one delta per word.
		if len(types) != 2+7+3 || types[0] != "message_start" || types[len(types)-1] != "message_stop" {
			t.Errorf("event types %q", types)
		}
	})

	t.Run("multi-turn with a tool result", func(t *testing.T) {
		p := params
		p.System = nil
		p.Tools = weatherTool()
		p.Messages = []anthropic.MessageParam{
			anthropic.NewUserMessage(anthropic.NewTextBlock("what is the weather in Paris?")),
			anthropic.NewAssistantMessage(anthropic.NewToolUseBlock("toolu_1", map[string]string{"city": "Paris"}, "get_weather")),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "sunny and mild", false)),
		}
		msg, err := client.Messages.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Content[0].Text != "mock reply from sdk to 3 messages" || msg.StopReason != anthropic.StopReasonEndTurn {
			t.Errorf("content %+v stop_reason %q", msg.Content, msg.StopReason)
		}
		// 6 words + 0 (tool_use has no text) + 3 words of the tool result, + 3 messages.
		if msg.Usage.InputTokens != 12 {
			t.Errorf("input tokens %d, want 12", msg.Usage.InputTokens)
		}
	})

	toolTests := []struct {
		name   string
		text   string
		choice anthropic.ToolChoiceUnionParam
		want   string // the tool called, "" for a text answer
	}{
		{name: "trigger word", text: "What's the Weather like?", want: "get_weather"},
		{name: "no trigger", text: "tell me a joke"},
		{name: "tool_choice any", text: "tell me a joke", choice: anthropic.ToolChoiceUnionParam{OfAny: &anthropic.ToolChoiceAnyParam{}}, want: "get_weather"},
		{name: "tool_choice none", text: "the weather?", choice: anthropic.ToolChoiceUnionParam{OfNone: &anthropic.ToolChoiceNoneParam{}}},
	}
	for _, tc := range toolTests {
		for _, stream := range []bool{false, true} {
			name := tc.name
			if stream {
				name += " stream"
			}
			t.Run("tools/"+name, func(t *testing.T) {
				p := params
				p.Tools = weatherTool()
				p.ToolChoice = tc.choice
				p.Messages = []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(tc.text))}
				var msg anthropic.Message
				if stream {
					var err error
					if msg, _, err = accumulate(t, client.Messages.NewStreaming(ctx, p)); err != nil {
						t.Fatal(err)
					}
				} else {
					got, err := client.Messages.New(ctx, p)
					if err != nil {
						t.Fatal(err)
					}
					msg = *got
				}
				if len(msg.Content) != 1 {
					t.Fatalf("content %+v", msg.Content)
				}
				block := msg.Content[0]
				if tc.want == "" {
					if block.Type != "text" || msg.StopReason != anthropic.StopReasonEndTurn {
						t.Errorf("block %+v stop_reason %q, want text and end_turn", block, msg.StopReason)
					}
					return
				}
				use := block.AsToolUse()
				var input struct{ City string }
				if err := json.Unmarshal(use.Input, &input); err != nil {
					t.Fatalf("tool input %s: %v", use.Input, err)
				}
				if block.Type != "tool_use" || use.Name != tc.want || use.ID == "" || input.City != "Paris" {
					t.Errorf("block %+v input %s, want a %s tool_use for Paris", block, use.Input, tc.want)
				}
				if msg.StopReason != anthropic.StopReasonToolUse || msg.Usage.OutputTokens != 2 {
					t.Errorf("stop_reason %q usage %+v", msg.StopReason, msg.Usage)
				}
			})
		}
	}

	reqs := m.Requests()
	if len(reqs) == 0 {
		t.Fatal("no request recorded")
	}
	for _, r := range reqs {
		if r.Path != "/v1/messages" || !r.HadAPIKey || r.HadAuth || r.Header.Get("X-Api-Key") != "" ||
			r.Header.Get("Anthropic-Version") == "" || r.Model != "claude-3-5-sonnet" || r.MaxTokens == nil {
			t.Errorf("recorded %+v: want the path, model, max_tokens, anthropic-version, HadAPIKey and no key", r)
		}
	}
	if !reqs[2].Stream || reqs[0].Stream || *reqs[1].MaxTokens != 3 {
		t.Errorf("recorded stream %v/%v, max_tokens %d", reqs[0].Stream, reqs[2].Stream, *reqs[1].MaxTokens)
	}
}

// TestAnthropicSDKErrors checks that the failure modes and the request checks of
// /v1/messages surface in the SDK as *anthropic.Error with the right status and type.
func TestAnthropicSDKErrors(t *testing.T) {
	const key = "sdk-anthropic-key"
	params := anthropic.MessageNewParams{
		Model:     "claude-3-5-sonnet",
		MaxTokens: 100,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	}
	user := func(s string) anthropic.MessageParam { return anthropic.NewUserMessage(anthropic.NewTextBlock(s)) }
	assistant := func(s string) anthropic.MessageParam { return anthropic.NewAssistantMessage(anthropic.NewTextBlock(s)) }
	tests := []struct {
		name           string
		failure        mockupstream.Failure
		opts           []option.RequestOption
		edit           func(*anthropic.MessageNewParams)
		wantStatus     int
		wantType       anthropic.ErrorType
		wantRetryAfter string
	}{
		{name: "Fail500", failure: mockupstream.Fail500, wantStatus: 500, wantType: anthropic.ErrorTypeAPIError},
		{name: "Fail429", failure: mockupstream.Fail429, wantStatus: 429, wantType: anthropic.ErrorTypeRateLimitError, wantRetryAfter: "1"},
		{name: "Fail529", failure: mockupstream.Fail529, wantStatus: 529, wantType: anthropic.ErrorTypeOverloadedError},
		{name: "wrong key", opts: []option.RequestOption{option.WithHeader("X-Api-Key", "wrong")}, wantStatus: 401, wantType: anthropic.ErrorTypeAuthenticationError},
		{
			name:       "bearer only",
			opts:       []option.RequestOption{option.WithHeaderDel("X-Api-Key"), option.WithHeader("Authorization", "Bearer "+key)},
			wantStatus: 401, wantType: anthropic.ErrorTypeAuthenticationError,
		},
		{name: "no anthropic-version", opts: []option.RequestOption{option.WithHeaderDel("Anthropic-Version")}, wantStatus: 400, wantType: anthropic.ErrorTypeInvalidRequestError},
		{name: "max_tokens 0", edit: func(p *anthropic.MessageNewParams) { p.MaxTokens = 0 }, wantStatus: 400, wantType: anthropic.ErrorTypeInvalidRequestError},
		{name: "no model", edit: func(p *anthropic.MessageNewParams) { p.Model = "" }, wantStatus: 400, wantType: anthropic.ErrorTypeInvalidRequestError},
		{name: "no messages", edit: func(p *anthropic.MessageNewParams) { p.Messages = nil }, wantStatus: 400, wantType: anthropic.ErrorTypeInvalidRequestError},
		{
			name: "assistant first",
			edit: func(p *anthropic.MessageNewParams) {
				p.Messages = []anthropic.MessageParam{assistant("hi"), user("hi")}
			},
			wantStatus: 400, wantType: anthropic.ErrorTypeInvalidRequestError,
		},
		{
			name:       "roles do not alternate",
			edit:       func(p *anthropic.MessageNewParams) { p.Messages = []anthropic.MessageParam{user("a"), user("b")} },
			wantStatus: 400, wantType: anthropic.ErrorTypeInvalidRequestError,
		},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			name := tc.name
			if stream {
				name += " stream"
			}
			t.Run(name, func(t *testing.T) {
				m, url := start(t, mockupstream.Options{RequireKey: key})
				m.SetFailure(tc.failure)
				client := anthropicClient(url, key, tc.opts...)
				p := params
				if tc.edit != nil {
					tc.edit(&p)
				}
				var err error
				if stream {
					_, _, err = accumulate(t, client.Messages.NewStreaming(context.Background(), p))
				} else {
					_, err = client.Messages.New(context.Background(), p)
				}
				var apiErr *anthropic.Error
				if !errors.As(err, &apiErr) {
					t.Fatalf("err %v (%T), want *anthropic.Error", err, err)
				}
				if apiErr.StatusCode != tc.wantStatus || apiErr.Type() != tc.wantType || apiErr.Message == "" {
					t.Errorf("status %d type %q message %q, want %d %q", apiErr.StatusCode, apiErr.Type(), apiErr.Message, tc.wantStatus, tc.wantType)
				}
				if got := apiErr.Response.Header.Get("Retry-After"); got != tc.wantRetryAfter {
					t.Errorf("retry-after %q, want %q", got, tc.wantRetryAfter)
				}
				if n := len(m.Requests()); n != 1 {
					t.Errorf("%d requests recorded, want 1", n)
				}
			})
		}
	}
}

// TestAnthropicSDKBrokenConnections checks the failure modes that break the connection
// instead of answering an error.
func TestAnthropicSDKBrokenConnections(t *testing.T) {
	const key = "sdk-anthropic-key"
	params := anthropic.MessageNewParams{
		Model:     "claude-3-5-sonnet",
		MaxTokens: 100,
		Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))},
	}
	newClient := func(t *testing.T, o mockupstream.Options, f mockupstream.Failure) anthropic.Client {
		t.Helper()
		o.RequireKey = key
		m, url := start(t, o)
		m.SetFailure(f)
		// A fresh connection per request: a failure may have broken the last one.
		return anthropicClient(url, key, option.WithHTTPClient(freshClient()))
	}
	notAPIError := func(t *testing.T, err error) {
		t.Helper()
		var apiErr *anthropic.Error
		if err == nil || errors.As(err, &apiErr) {
			t.Fatalf("err %v, want a transport error", err)
		}
	}

	t.Run("cut stream", func(t *testing.T) {
		client := newClient(t, mockupstream.Options{Name: "cut"}, mockupstream.FailCutStream)
		msg, types, err := accumulate(t, client.Messages.NewStreaming(context.Background(), params))
		notAPIError(t, err)
		if len(msg.Content) != 1 || msg.Content[0].Text != "mock" {
			t.Errorf("accumulated %+v before the cut, want the first word", msg.Content)
		}
		for _, typ := range types {
			if typ == "message_stop" || typ == "message_delta" {
				t.Errorf("cut stream sent %s: %q", typ, types)
			}
		}
	})
	t.Run("cut non-stream", func(t *testing.T) {
		client := newClient(t, mockupstream.Options{}, mockupstream.FailCutStream)
		_, err := client.Messages.New(context.Background(), params)
		notAPIError(t, err)
	})
	t.Run("reset", func(t *testing.T) {
		client := newClient(t, mockupstream.Options{}, mockupstream.FailReset)
		_, err := client.Messages.New(context.Background(), params)
		notAPIError(t, err)
	})
	t.Run("slow answers after the delay", func(t *testing.T) {
		client := newClient(t, mockupstream.Options{SlowDelay: 50 * time.Millisecond}, mockupstream.FailSlow)
		msg, err := client.Messages.New(context.Background(), params)
		if err != nil || msg.Content[0].Text != "mock reply from mock to 1 messages" {
			t.Fatalf("msg %+v err %v", msg, err)
		}
	})
	t.Run("slow gives up with the client", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		client := newClient(t, mockupstream.Options{SlowDelay: time.Hour}, mockupstream.FailSlow)
		_, err := client.Messages.New(ctx, params)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want context.DeadlineExceeded", err)
		}
	})
}
