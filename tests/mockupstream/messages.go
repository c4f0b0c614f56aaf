package mockupstream

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// messagesPath is Anthropic's Messages API endpoint.
const messagesPath = "/v1/messages"

// The tool_use answer of /v1/messages: a request whose tools are not switched off by
// tool_choice {"type":"none"} gets a single tool_use block instead of text when
// tool_choice is {"type":"any"} or {"type":"tool","name":...}, or when the text of its
// last message, a user turn, contains ToolTrigger (case-insensitively). The block calls
// the tool named by tool_choice, else the first tool, with ToolInput, and the answer's
// stop_reason is "tool_use". It counts toolOutputTokens output tokens, one per
// input_json_delta a stream sends, whatever max_tokens says.
const (
	ToolTrigger = "weather"
	ToolInput   = `{"city":"Paris"}`
)

// toolInputChunks are the input_json_delta fragments a streamed tool_use sends; joined,
// they are ToolInput with a space after the colon.
var toolInputChunks = []string{`{"city": `, `"Paris"}`}

const toolOutputTokens = 2

// cutAfterAnthropicEvents is where FailCutStream cuts a /v1/messages stream: after
// message_start, content_block_start, ping and the first content_block_delta.
const cutAfterAnthropicEvents = 4

type messagesRequest struct {
	Model      string             `json:"model"`
	MaxTokens  json.RawMessage    `json:"max_tokens"`
	System     json.RawMessage    `json:"system"`
	Messages   []anthropicMessage `json:"messages"`
	Stream     bool               `json:"stream"`
	Tools      []anthropicTool    `json:"tools"`
	ToolChoice *toolChoice        `json:"tool_choice"`
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type anthropicTool struct {
	Name string `json:"name"`
}

type toolChoice struct {
	Type string `json:"type"`
	Name string `json:"name"`
}

// anthropicAnswer is a Messages API message, the answer of a non-streamed request and
// the "message" of a message_start event.
type anthropicAnswer struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Role         string          `json:"role"`
	Model        string          `json:"model"`
	Content      []contentBlock  `json:"content"`
	StopReason   *string         `json:"stop_reason"`
	StopSequence *string         `json:"stop_sequence"`
	Usage        *anthropicUsage `json:"usage,omitempty"`
}

type contentBlock struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

type anthropicUsage struct {
	InputTokens              int `json:"input_tokens"`
	OutputTokens             int `json:"output_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
}

// The streaming events, each with its "type".
type (
	messageStartEvent struct {
		Type    string          `json:"type"`
		Message anthropicAnswer `json:"message"`
	}
	contentBlockStartEvent struct {
		Type         string       `json:"type"`
		Index        int          `json:"index"`
		ContentBlock contentBlock `json:"content_block"`
	}
	contentBlockDeltaEvent struct {
		Type  string     `json:"type"`
		Index int        `json:"index"`
		Delta blockDelta `json:"delta"`
	}
	blockDelta struct {
		Type        string  `json:"type"`
		Text        *string `json:"text,omitempty"`
		PartialJSON *string `json:"partial_json,omitempty"`
	}
	contentBlockStopEvent struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}
	messageDeltaEvent struct {
		Type  string      `json:"type"`
		Delta stopDelta   `json:"delta"`
		Usage *deltaUsage `json:"usage,omitempty"`
	}
	stopDelta struct {
		StopReason   string  `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	}
	deltaUsage struct {
		OutputTokens int `json:"output_tokens"`
	}
	typeOnlyEvent struct {
		Type string `json:"type"`
	}
)

// messages answers POST /v1/messages in Anthropic's wire protocol.
func (s *Server) messages(w http.ResponseWriter, r *http.Request, body []byte, fail Failure) error {
	var req messagesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return errAnthropicInvalid("There was an error parsing the body of your request: " + err.Error())
	}
	maxTokens, err := req.validate()
	if err != nil {
		return err
	}

	inputTokens := len(req.Messages) + countTokens(blocksText(req.System))
	for _, m := range req.Messages {
		inputTokens += countTokens(blocksText(m.Content))
	}
	var block contentBlock
	var outputTokens int
	var stopReason string
	var deltas []blockDelta
	if tool, ok := req.toolToUse(); ok {
		block = contentBlock{Type: "tool_use", ID: anthropicID("toolu", body), Name: tool, Input: json.RawMessage(ToolInput)}
		outputTokens, stopReason = toolOutputTokens, "tool_use"
		for _, c := range toolInputChunks {
			deltas = append(deltas, blockDelta{Type: "input_json_delta", PartialJSON: &c})
		}
	} else {
		reply := fmt.Sprintf("mock reply from %s to %d messages", s.opts.Name, len(req.Messages))
		words, finish := cutWords(reply, maxTokens)
		text := strings.Join(words, " ")
		echo, echoed := echoReply(lastTextBlock(req.Messages[len(req.Messages)-1].Content))
		if echoed {
			words, finish, text = echoChunks(echo), "stop", echo
		}
		block = contentBlock{Type: "text", Text: &text}
		outputTokens, stopReason = len(words), "end_turn"
		if finish == "length" {
			stopReason = "max_tokens"
		}
		for i, word := range words {
			if i > 0 && !echoed {
				word = " " + word
			}
			deltas = append(deltas, blockDelta{Type: "text_delta", Text: &word})
		}
	}
	answer := anthropicAnswer{
		ID: anthropicID("msg", body), Type: "message", Role: "assistant", Model: req.Model,
		Content: []contentBlock{block}, StopReason: &stopReason,
	}
	if !s.opts.NoUsage {
		answer.Usage = &anthropicUsage{InputTokens: inputTokens, OutputTokens: outputTokens}
	}
	if !req.Stream {
		return writeJSON(w, answer, fail)
	}

	sse := s.startSSE(w, r, fail)
	sse.cutAfter = cutAfterAnthropicEvents
	start := answer
	start.Content, start.StopReason = []contentBlock{}, nil
	if start.Usage != nil {
		start.Usage = &anthropicUsage{InputTokens: inputTokens, OutputTokens: 1}
	}
	if err := sse.named("message_start", messageStartEvent{Type: "message_start", Message: start}); err != nil {
		return err
	}
	startBlock := block
	if block.Type == "text" {
		startBlock.Text = new(string)
	} else {
		startBlock.Input = json.RawMessage(`{}`)
	}
	if err := sse.named("content_block_start", contentBlockStartEvent{Type: "content_block_start", ContentBlock: startBlock}); err != nil {
		return err
	}
	if err := sse.named("ping", typeOnlyEvent{Type: "ping"}); err != nil {
		return err
	}
	for _, d := range deltas {
		if err := sse.named("content_block_delta", contentBlockDeltaEvent{Type: "content_block_delta", Delta: d}); err != nil {
			return err
		}
	}
	if err := sse.named("content_block_stop", contentBlockStopEvent{Type: "content_block_stop"}); err != nil {
		return err
	}
	md := messageDeltaEvent{Type: "message_delta", Delta: stopDelta{StopReason: stopReason}}
	if !s.opts.NoUsage {
		md.Usage = &deltaUsage{OutputTokens: outputTokens}
	}
	if err := sse.named("message_delta", md); err != nil {
		return err
	}
	return sse.named("message_stop", typeOnlyEvent{Type: "message_stop"})
}

// validate checks req as Anthropic does and returns its max_tokens.
func (req *messagesRequest) validate() (int, error) {
	if req.Model == "" {
		return 0, errAnthropicInvalid("model: Field required")
	}
	if len(req.MaxTokens) == 0 || string(req.MaxTokens) == "null" {
		return 0, errAnthropicInvalid("max_tokens: Field required")
	}
	maxTokens := intValue(req.MaxTokens)
	if maxTokens == nil {
		return 0, errAnthropicInvalid("max_tokens: Input should be a valid integer")
	}
	if *maxTokens < 1 {
		return 0, errAnthropicInvalid("max_tokens: Input should be greater than or equal to 1")
	}
	if len(req.Messages) == 0 {
		return 0, errAnthropicInvalid("messages: at least one message is required")
	}
	for i, m := range req.Messages {
		switch {
		case m.Role != "user" && m.Role != "assistant":
			return 0, errAnthropicInvalid(fmt.Sprintf("messages.%d.role: Input should be 'user' or 'assistant'", i))
		case len(m.Content) == 0 || string(m.Content) == "null":
			return 0, errAnthropicInvalid(fmt.Sprintf("messages.%d.content: Field required", i))
		case i == 0 && m.Role != "user":
			return 0, errAnthropicInvalid(`messages: first message must use the "user" role`)
		case i > 0 && m.Role == req.Messages[i-1].Role:
			return 0, errAnthropicInvalid(`messages: roles must alternate between "user" and "assistant"`)
		}
	}
	return *maxTokens, nil
}

// toolToUse reports whether req gets a tool_use answer, and the tool's name (see
// ToolTrigger).
func (req *messagesRequest) toolToUse() (string, bool) {
	if len(req.Tools) == 0 {
		return "", false
	}
	name := req.Tools[0].Name
	if tc := req.ToolChoice; tc != nil {
		switch tc.Type {
		case "none":
			return "", false
		case "any":
			return name, true
		case "tool":
			if tc.Name != "" {
				name = tc.Name
			}
			return name, true
		}
	}
	last := req.Messages[len(req.Messages)-1]
	if last.Role == "user" && strings.Contains(strings.ToLower(blocksText(last.Content)), ToolTrigger) {
		return name, true
	}
	return "", false
}

// blocksText returns the text of an Anthropic system prompt or message content: a
// string, or an array of blocks of which "text" blocks count, and "tool_result" blocks
// by the text of their own content.
func blocksText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Type    string          `json:"type"`
		Text    string          `json:"text"`
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(raw, &blocks) != nil {
		return ""
	}
	var texts []string
	for _, b := range blocks {
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "tool_result":
			texts = append(texts, blocksText(b.Content))
		}
	}
	return strings.Join(texts, " ")
}

// anthropicID derives a stable Anthropic-style id ("msg_mock_...", "toolu_mock_...")
// from the request body.
func anthropicID(prefix string, body []byte) string {
	sum := sha256.Sum256(body)
	return prefix + "_mock_" + hex.EncodeToString(sum[:8])
}

// lastTextBlock is the text of a content's last text block (the string itself for a
// string content).
func lastTextBlock(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &blocks)
	for i := len(blocks) - 1; i >= 0; i-- {
		if blocks[i].Type == "text" {
			return blocks[i].Text
		}
	}
	return ""
}
