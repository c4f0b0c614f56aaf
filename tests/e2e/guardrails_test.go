package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// guardTiers puts the guardrail policy of the acceptance on the default and claude
// tiers: PII redacted on the way in, with pseudonymisation; secrets blocked on the
// way out.
func guardTiers(t *testing.T, s *stack, tiers ...string) {
	t.Helper()
	for _, tier := range tiers {
		s.patch(t, "/tiers/"+tier, map[string]any{"guardrails": map[string]any{
			"pii": map[string]any{"input": "redact"}, "secrets": map[string]any{"output": "block"}, "pseudonymise": true}})
	}
}

// The mock upstream answers a last message starting with mockupstream.EchoPrefix
// ("echo: ") with its rest, streamed in pieces of a few bytes: the tests below make
// the "model" say what they need, a key split across events included.

// lastTexts is what the region's mock upstream got as texts in its last request.
func lastTexts(s *stack, region string) string {
	reqs := s.upstream[region].Requests()
	if len(reqs) == 0 {
		return ""
	}
	return strings.Join(reqs[len(reqs)-1].Texts, "\n")
}

// TestGuardrailsWithTheOfficialSDKs: with PII redacted on input (pseudonymised)
// and secrets blocked on output, the official OpenAI and Anthropic SDKs, changing
// only the base URL and the token, get their answers while the upstream sees
// placeholders in every message, tool messages and results included; the answer
// restores the originals; an AWS key the model streams in pieces ends the stream
// with content_blocked before any of it reaches the SDK; and the audit events say
// flagged with the types.
func TestGuardrailsWithTheOfficialSDKs(t *testing.T) {
	t.Parallel()
	s, claudeToken := claudeStack(t)
	// default last: each patch publishes a whole snapshot, so the probe below, which
	// waits for default's guardrails on the worker, also sees claude's.
	guardTiers(t, s, "claude", "default")
	oai := openai.NewClient(option.WithBaseURL("http://"+s.dp["eu"].Addr()+"/v1/"), option.WithAPIKey(s.mint(t, "global-app")),
		option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	waitfor.Within(t, 10*time.Second, "the guardrail policy on the eu worker", func() bool {
		resp, err := oai.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("echo: probe a@example.com")}})
		return err == nil && !strings.Contains(lastTexts(s, "eu"), "a@example.com") && len(resp.Choices) > 0
	})

	t.Run("openai chat with tool messages", func(t *testing.T) {
		resp, err := oai.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("Support bot. Escalations go to ops@example.com."),
				openai.UserMessage("My card is 4111 1111 1111 1111, please check the refund."),
				openai.ToolMessage("Customer jane@example.org, IBAN DE89 3704 0044 0532 0130 00", "call_1"),
				openai.UserMessage("echo: I will write to jane@example.org about card 4111 1111 1111 1111."),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		sent := lastTexts(s, "eu")
		for _, leaked := range []string{"4111", "jane@example.org", "ops@example.com", "DE89"} {
			if strings.Contains(sent, leaked) {
				t.Errorf("the upstream got %q:\n%s", leaked, sent)
			}
		}
		for _, want := range []string{"[CARD_1]", "[EMAIL_1]", "[EMAIL_2]", "[IBAN_1]"} {
			if !strings.Contains(sent, want) {
				t.Errorf("the upstream's texts lack %s:\n%s", want, sent)
			}
		}
		if got := resp.Choices[0].Message.Content; got != "I will write to jane@example.org about card 4111 1111 1111 1111." {
			t.Fatalf("the pseudonymised answer reads %q", got)
		}
	})

	key := "AKIA" + "QYLPMN5HHHFPZAM2"
	t.Run("openai stream with a key", func(t *testing.T) {
		stream := oai.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "gpt-4o-mini",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("echo: Sure, the key is " + key + " and that is all.")}})
		var got strings.Builder
		for stream.Next() {
			for _, c := range stream.Current().Choices {
				got.WriteString(c.Delta.Content)
			}
		}
		err := stream.Err()
		if err == nil || !strings.Contains(err.Error(), "content_blocked") {
			t.Fatalf("the stream ended with %v, want content_blocked", err)
		}
		if strings.Contains(got.String(), key[:6]) || !strings.HasPrefix(got.String(), "Sure, the key is") {
			t.Fatalf("the SDK got %q of the answer", got.String())
		}
	})

	ac := anthropic.NewClient(aoption.WithBaseURL("http://"+s.dp["eu"].Addr()), aoption.WithAPIKey(claudeToken), aoption.WithMaxRetries(0))
	t.Run("anthropic messages with a tool result", func(t *testing.T) {
		msg, err := ac.Messages.New(ctx, anthropic.MessageNewParams{
			Model: "claude-3-5-sonnet", MaxTokens: 100,
			System: []anthropic.TextBlockParam{{Text: "Escalations: ops@example.com"}},
			Messages: []anthropic.MessageParam{
				anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "caller +44 20 7946 0958", false),
					anthropic.NewTextBlock("echo: Calling +44 20 7946 0958 now.")),
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		if sent := lastTexts(s, "eu"); strings.Contains(sent, "7946") || strings.Contains(sent, "ops@example.com") || !strings.Contains(sent, "[PHONE_1]") {
			t.Fatalf("the Anthropic upstream got:\n%s", sent)
		}
		if len(msg.Content) != 1 || msg.Content[0].Text != "Calling +44 20 7946 0958 now." {
			t.Fatalf("the pseudonymised Anthropic answer: %+v", msg.Content)
		}
	})

	t.Run("anthropic stream with a key", func(t *testing.T) {
		stream := ac.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: "claude-3-5-sonnet", MaxTokens: 100,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("echo: key " + key + " done"))}})
		var got strings.Builder
		for stream.Next() {
			if d, ok := stream.Current().AsAny().(anthropic.ContentBlockDeltaEvent); ok {
				got.WriteString(d.Delta.Text)
			}
		}
		if err := stream.Err(); err == nil || !strings.Contains(err.Error(), "content_blocked") {
			t.Fatalf("the Anthropic stream ended with %v, want content_blocked", err)
		}
		if strings.Contains(got.String(), key[:6]) {
			t.Fatalf("the SDK got %q", got.String())
		}
	})

	// The audit trail says what was found, never the text.
	var events []audit.Event
	waitfor.Within(t, 15*time.Second, "the flagged audit events in the archive", func() bool {
		_, events = s.export(t, "eu")
		n := 0
		for _, e := range events {
			if e.Flagged {
				n++
			}
		}
		return n >= 5
	})
	var types []string
	for _, e := range events {
		for _, f := range e.Flags {
			types = append(types, f.Direction+"/"+f.Family+"/"+f.Type+"/"+f.Action)
		}
	}
	for _, want := range []string{"input/pii/card/redact", "input/pii/email/redact", "input/pii/iban/redact", "input/pii/phone/redact",
		"output/secrets/aws_key/block"} {
		if !slices.Contains(types, want) {
			t.Errorf("the audit flags %v lack %s", types, want)
		}
	}
}
