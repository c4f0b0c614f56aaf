package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// claudeStack is a seeded stack with an Anthropic deployment in eu serving
// claude-3-5-sonnet (the eu mock speaks the Messages API too), and the token of a
// client allowed to use it.
func claudeStack(t *testing.T) (*stack, string) {
	t.Helper()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)
	s.mustAdmin(t, 201, "POST", "/providers", map[string]any{"name": "anthropic", "kind": "anthropic"})
	s.mustAdmin(t, 201, "POST", "/deployments", map[string]any{
		"name": "anthropic-eu", "provider": "anthropic", "region": "eu", "kind": "cloud",
		"base_url": s.upURL["eu"], "key_source": "file", "key_path": s.keyFile,
	})
	s.mustAdmin(t, 201, "POST", "/models", map[string]any{
		"name": "claude-3-5-sonnet", "deployment": "anthropic-eu", "upstream_model": "claude-3-5-sonnet-20241022"})
	s.mustAdmin(t, 201, "POST", "/tiers", map[string]any{
		"name": "claude", "requests_per_minute": 1000, "tokens_per_hour": 1000000, "max_concurrent_requests": 10,
		"allowed_models": []string{"claude-3-5-sonnet"}})
	s.mustAdmin(t, 201, "POST", "/clients", map[string]any{"client_id": "claude-app", "tenant": "demo", "tier": "claude", "residency": "global"})
	token := s.mint(t, "claude-app")
	for name := range s.dp {
		waitfor.Within(t, 10*time.Second, name+" knows claude-app", func() bool {
			r := s.call(t, name, token, "GET", "/v1/models", nil)
			return r.Status == http.StatusOK && strings.Contains(string(r.Body), "claude-3-5-sonnet")
		})
	}
	return s, token
}

const claudeReply = "mock reply from mock-eu to 1 messages"

// TestOfficialAnthropicSDK points the official Anthropic SDK at /v1/messages of a
// data plane, changing only the base URL and the key (the gateway's token).
func TestOfficialAnthropicSDK(t *testing.T) {
	t.Parallel()
	s, token := claudeStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name := range s.dp { // the us worker serves it from eu too
		client := anthropic.NewClient(aoption.WithBaseURL("http://"+s.dp[name].Addr()), aoption.WithAPIKey(token), aoption.WithMaxRetries(0))
		params := anthropic.MessageNewParams{
			Model: "claude-3-5-sonnet", MaxTokens: 100,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))},
		}
		t.Run(name+" message", func(t *testing.T) {
			msg, err := client.Messages.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if len(msg.Content) != 1 || msg.Content[0].Text != claudeReply || msg.Usage.OutputTokens == 0 {
				t.Fatalf("message %+v", msg)
			}
		})
		t.Run(name+" stream", func(t *testing.T) {
			stream := client.Messages.NewStreaming(ctx, params)
			defer stream.Close()
			var msg anthropic.Message
			for stream.Next() {
				if err := msg.Accumulate(stream.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if len(msg.Content) != 1 || msg.Content[0].Text != claudeReply || msg.StopReason != "end_turn" {
				t.Fatalf("accumulated %+v", msg)
			}
		})
	}
	t.Run("errors in Anthropic's schema", func(t *testing.T) {
		client := anthropic.NewClient(aoption.WithBaseURL("http://"+s.dp["eu"].Addr()), aoption.WithAPIKey("not-a-token"), aoption.WithMaxRetries(0))
		_, err := client.Messages.New(ctx, anthropic.MessageNewParams{Model: "claude-3-5-sonnet", MaxTokens: 10,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello"))}})
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || !strings.Contains(ae.RawJSON(), "authentication_error") {
			t.Fatalf("err %v, want Anthropic's 401 authentication_error", err)
		}
	})
}

// TestOpenAISDKUsesClaude checks the translation: the OpenAI SDK calls
// claude-3-5-sonnet, served by an Anthropic deployment.
func TestOpenAISDKUsesClaude(t *testing.T) {
	t.Parallel()
	s, token := claudeStack(t)
	client := openai.NewClient(option.WithBaseURL("http://"+s.dp["eu"].Addr()+"/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("chat", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "claude-3-5-sonnet",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("hello")},
		})
		if err != nil {
			t.Fatal(err)
		}
		// The mock counts words: "be brief" + "hello" + 1 per message (1 here: the
		// system prompt is not a message); the reply has 7 words.
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != claudeReply || resp.Choices[0].FinishReason != "stop" ||
			resp.Usage.PromptTokens != 4 || resp.Usage.CompletionTokens != 7 || resp.Model != "claude-3-5-sonnet" {
			t.Fatalf("completion %+v", resp)
		}
	})
	t.Run("chat stream with usage", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         "claude-3-5-sonnet",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var acc openai.ChatCompletionAccumulator
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != claudeReply || acc.Usage.TotalTokens != 2+7 {
			t.Fatalf("accumulated %+v usage %+v", acc.Choices, acc.Usage)
		}
	})
	t.Run("tool calls both ways", func(t *testing.T) {
		tools := []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name: "get_weather",
			Parameters: openai.FunctionParameters{"type": "object",
				"properties": map[string]any{"city": map[string]any{"type": "string"}}, "required": []string{"city"}},
		})}
		ask := openai.UserMessage("what is the weather in Paris?")
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "claude-3-5-sonnet", Tools: tools, Messages: []openai.ChatCompletionMessageParamUnion{ask}})
		if err != nil {
			t.Fatal(err)
		}
		calls := resp.Choices[0].Message.ToolCalls
		if resp.Choices[0].FinishReason != "tool_calls" || len(calls) != 1 || calls[0].Function.Name != "get_weather" ||
			!strings.Contains(calls[0].Function.Arguments, `"Paris"`) {
			t.Fatalf("answer %+v", resp.Choices[0])
		}
		// The tool's result goes back; the mock answers in text.
		resp, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "claude-3-5-sonnet", Tools: tools,
			Messages: []openai.ChatCompletionMessageParamUnion{ask, resp.Choices[0].Message.ToParam(),
				openai.ToolMessage(`{"temp_c":21}`, calls[0].ID)},
		})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].FinishReason != "stop" || !strings.HasPrefix(resp.Choices[0].Message.Content, "mock reply") {
			t.Fatalf("answer to the tool result %+v", resp.Choices[0])
		}
	})
}
