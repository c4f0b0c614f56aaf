package usage

import (
	"encoding/json"
	"math"
	"unicode/utf8"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Fixed costs EstimatePrompt adds to the counted text of a chat, from OpenAI's
// documented accounting for its chat models ("How to count tokens with tiktoken").
const (
	// TokensPerMessage frames each message: <|start|>{role}<|message|>…<|end|>.
	TokensPerMessage = 3
	// TokensPerName is the extra cost of a message's "name".
	TokensPerName = 1
	// ReplyTokens primes the reply: <|start|>assistant<|message|>.
	ReplyTokens = 3
	// ImageTokens is charged per image part: OpenAI's cost of a low-detail image.
	// Higher detail costs more (85 + 170 per 512-pixel tile), so an image prompt is
	// underestimated; the reservation is settled to the reported usage afterwards.
	ImageTokens = 85
)

// EstimatePrompt estimates the prompt tokens of an OpenAI-style request, given its
// top-level JSON members (as decoded into a map), for operation op: policy.OpChat,
// policy.OpMessages, policy.OpTextCompletion or policy.OpEmbeddings. Any other
// operation estimates 0.
//
//   - chat: for each message, TokensPerMessage + the tokens of its role and content
//     (+ TokensPerName and the name's tokens when it has a name) + the tokens of the
//     name and arguments of its tool_calls and function_call; then ReplyTokens, plus
//     the tokens of the raw JSON of "tools" and "functions". Content is a string,
//     null, or an array of parts, of which "text" and "refusal" are counted and each
//     image part ("image_url", "image", "input_image") costs ImageTokens. Audio and
//     file parts are not counted.
//   - messages (Anthropic): as chat, plus the top-level "system" (a string or an
//     array of text blocks).
//   - text_completion: "prompt" (and "suffix"): a string, an array of strings, an array of
//     token ids or an array of arrays of token ids. Strings are counted; a token id
//     counts 1.
//   - embeddings: "input", with the same shapes as a completion's prompt.
//
// Malformed shapes never panic: what parses is counted and the rest ignored (the
// upstream rejects such a request anyway).
//
// At most tokenizeBudget bytes of text go through the tokenizer; the rest is counted
// at the tokens-per-byte rate of what did.
func EstimatePrompt(op string, fields map[string]json.RawMessage) int64 {
	e := &estimator{budget: tokenizeBudget}
	switch op {
	case policy.OpChat, policy.OpMessages:
		n := e.chatMessagesTokens(fields["messages"]) + ReplyTokens
		if op == policy.OpMessages {
			n += e.contentTokens(fields["system"])
		}
		for _, k := range [...]string{"tools", "functions"} {
			if raw := fields[k]; !isNull(raw) {
				n += e.count(string(raw))
			}
		}
		return n
	case policy.OpTextCompletion:
		return e.inputTokens(fields["prompt"]) + e.inputTokens(fields["suffix"])
	case policy.OpEmbeddings:
		return e.inputTokens(fields["input"])
	}
	return 0
}

// tokenizeBudget bounds the text one EstimatePrompt runs through the tokenizer,
// which manages 5 to 12 MB/s: a 4 MiB prompt would cost half a second of CPU on the
// request path. Beyond the budget, text is counted at the tokens-per-byte rate
// measured on the budget's text (fallbackRate if there was none). The reservation is
// an estimate either way, settled to the provider's usage afterwards.
const tokenizeBudget = 64 << 10

// fallbackRate is the tokens per byte of English text, used when nothing was
// tokenized yet.
const fallbackRate = 0.25

// estimator counts the text of one request within tokenizeBudget.
type estimator struct {
	budget        int
	tokens, bytes int64 // what went through the tokenizer
}

func (e *estimator) count(s string) int64 {
	if len(s) <= e.budget {
		n := counts.count(s)
		e.budget -= len(s)
		e.tokens += n
		e.bytes += int64(len(s))
		return n
	}
	cut := e.budget
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	n := CountText(s[:cut])
	e.budget -= cut
	e.tokens += n
	e.bytes += int64(cut)
	rate := fallbackRate
	if e.bytes > 0 {
		rate = float64(e.tokens) / float64(e.bytes)
	}
	return n + int64(math.Ceil(float64(len(s)-cut)*rate))
}

// chatMessage is the part of a chat message EstimatePrompt reads. The raw members
// are decoded one by one, so one of the wrong type does not hide the others.
type chatMessage struct {
	Role         json.RawMessage `json:"role"`
	Content      json.RawMessage `json:"content"`
	Name         json.RawMessage `json:"name"`
	ToolCalls    json.RawMessage `json:"tool_calls"`
	FunctionCall json.RawMessage `json:"function_call"`
}

// contentPart is the part of a content part EstimatePrompt reads.
type contentPart struct {
	Type    json.RawMessage `json:"type"`
	Text    json.RawMessage `json:"text"`
	Refusal json.RawMessage `json:"refusal"`
}

// toolCall is an assistant message's tool call, or a streamed delta of one.
type toolCall struct {
	Function json.RawMessage `json:"function"`
}

// functionCall is the name and arguments of a tool call or a legacy function_call.
type functionCall struct {
	Name      json.RawMessage `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

func (e *estimator) chatMessagesTokens(raw json.RawMessage) int64 {
	var msgs []json.RawMessage
	if firstByte(raw) != '[' || json.Unmarshal(raw, &msgs) != nil {
		return 0
	}
	var n int64
	for _, m := range msgs {
		var msg chatMessage
		if firstByte(m) != '{' || json.Unmarshal(m, &msg) != nil {
			continue
		}
		n += TokensPerMessage + e.count(stringValue(msg.Role)) + e.contentTokens(msg.Content)
		if firstByte(msg.Name) == '"' {
			n += TokensPerName + e.count(stringValue(msg.Name))
		}
		var calls []toolCall
		if firstByte(msg.ToolCalls) == '[' {
			_ = json.Unmarshal(msg.ToolCalls, &calls) // a malformed call is left empty
		}
		for _, c := range calls {
			n += e.functionTokens(c.Function)
		}
		n += e.functionTokens(msg.FunctionCall)
	}
	return n
}

func (e *estimator) contentTokens(raw json.RawMessage) int64 {
	switch firstByte(raw) {
	case '"':
		return e.count(stringValue(raw))
	case '[':
		var parts []json.RawMessage
		if json.Unmarshal(raw, &parts) != nil {
			return 0
		}
		var n int64
		for _, p := range parts {
			var part contentPart
			if firstByte(p) != '{' || json.Unmarshal(p, &part) != nil {
				continue
			}
			n += e.count(stringValue(part.Text)) + e.count(stringValue(part.Refusal))
			switch stringValue(part.Type) {
			case "image_url", "image", "input_image":
				n += ImageTokens
			}
		}
		return n
	}
	return 0
}

// functionTokens counts the name and arguments of a function call object.
func (e *estimator) functionTokens(raw json.RawMessage) int64 {
	var f functionCall
	if firstByte(raw) != '{' || json.Unmarshal(raw, &f) != nil {
		return 0
	}
	return e.count(stringValue(f.Name)) + e.count(stringValue(f.Arguments))
}

// inputTokens counts a prompt or an embedding input: a string, or an array whose
// string elements are counted, whose numbers (token ids) count 1 each, and whose
// arrays (of token ids) count their length.
func (e *estimator) inputTokens(raw json.RawMessage) int64 {
	switch firstByte(raw) {
	case '"':
		return e.count(stringValue(raw))
	case '[':
		if !json.Valid(raw) {
			return 0
		}
		var n int64
		for it := elements(raw); ; {
			el, ok := it.next()
			if !ok {
				return n
			}
			switch c := el[0]; {
			case c == '"':
				n += e.count(stringValue(el))
			case c == '[':
				for ids := elements(el); ; n++ {
					if _, ok := ids.next(); !ok {
						break
					}
				}
			case c == '-' || c >= '0' && c <= '9':
				n++
			}
		}
	}
	return 0
}
