package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// message is the part of Anthropic's non-streamed Messages answer that matters here.
type message struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Content    []contentBlock `json:"content"`
	StopReason string         `json:"stop_reason"`
	Usage      usage          `json:"usage"`
}

// contentBlock is a content block of an answer: text and tool_use are translated,
// other kinds (thinking, server tools) have no OpenAI counterpart and are dropped.
type contentBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// usage is Anthropic's token usage. Input tokens exclude the tokens written to and
// read from the prompt cache, which are billed as input too.
type usage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// prompt is the OpenAI prompt_tokens of u: every input token, cached or not.
func (u usage) prompt() int64 {
	return u.InputTokens + u.CacheCreationInputTokens + u.CacheReadInputTokens
}

type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      chatOutMessage  `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type chatOutMessage struct {
	Role      string        `json:"role"`
	Content   *string       `json:"content"`
	Refusal   *string       `json:"refusal"`
	ToolCalls []outToolCall `json:"tool_calls,omitempty"`
}

type outToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

func chatUsageOf(u usage) chatUsage {
	cu := chatUsage{
		PromptTokens:     u.prompt(),
		CompletionTokens: u.OutputTokens,
		TotalTokens:      u.prompt() + u.OutputTokens,
	}
	cu.PromptTokensDetails.CachedTokens = u.CacheReadInputTokens
	return cu
}

// completionID is the chat completion id for Anthropic message id: OpenAI's prefix,
// so clients that look for it are content, and the upstream id, so logs line up.
func completionID(messageID string) string { return "chatcmpl-" + messageID }

// finishReason maps an Anthropic stop_reason to OpenAI's finish_reason.
func finishReason(stopReason string) string {
	switch stopReason {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	default: // end_turn, stop_sequence, pause_turn, or none
		return "stop"
	}
}

// MessageToChatCompletion translates Anthropic's non-streamed Messages answer into
// an OpenAI chat.completion for publicModel, the model name the client asked for:
// text blocks joined into the message content, tool_use blocks into tool_calls, the
// stop reason into finish_reason, and usage with prompt_tokens counting cached input.
func MessageToChatCompletion(body []byte, publicModel string) ([]byte, error) {
	return messageToChatCompletion(body, publicModel, time.Now().Unix())
}

func messageToChatCompletion(body []byte, publicModel string, created int64) ([]byte, error) {
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("decode messages answer: %w", err)
	}
	if m.Type != "message" {
		return nil, fmt.Errorf("decode messages answer: type %q, not a message", m.Type)
	}
	var text strings.Builder
	hasText := false
	var calls []outToolCall
	for _, b := range m.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
			hasText = true
		case "tool_use":
			args, err := compactArguments(b.Input)
			if err != nil {
				return nil, fmt.Errorf("decode messages answer: tool_use input: %w", err)
			}
			call := outToolCall{ID: b.ID, Type: "function"}
			call.Function.Name = b.Name
			call.Function.Arguments = args
			calls = append(calls, call)
		}
	}
	msg := chatOutMessage{Role: "assistant", ToolCalls: calls}
	if hasText || len(calls) == 0 {
		s := text.String()
		msg.Content = &s
	}
	out, err := json.Marshal(chatCompletion{
		ID:      completionID(m.ID),
		Object:  "chat.completion",
		Created: created,
		Model:   publicModel,
		Choices: []chatChoice{{Message: msg, Logprobs: json.RawMessage("null"), FinishReason: finishReason(m.StopReason)}},
		Usage:   chatUsageOf(m.Usage),
	})
	if err != nil {
		return nil, fmt.Errorf("encode chat completion: %w", err)
	}
	return out, nil
}

var errNotObject = errors.New("not a JSON object")

// compactArguments renders a tool_use input as OpenAI's arguments string: compact
// JSON, "{}" for none.
func compactArguments(input json.RawMessage) (string, error) {
	input = bytes.TrimSpace(input)
	if len(input) == 0 || string(input) == "null" {
		return "{}", nil
	}
	if input[0] != '{' {
		return "", errNotObject
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, input); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// Usage reads the usage of a non-streamed Messages API answer: prompt tokens
// (cached input included) and completion tokens. ok is false when body has none.
func Usage(body []byte) (prompt, completion int64, ok bool) {
	var m struct {
		Usage *usage `json:"usage"`
	}
	if json.Unmarshal(body, &m) != nil || m.Usage == nil {
		return 0, 0, false
	}
	return m.Usage.prompt(), m.Usage.OutputTokens, true
}
