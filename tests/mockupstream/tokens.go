package mockupstream

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
)

// created is the "created" timestamp of every answer, fixed so that equal requests get
// byte-identical answers.
const created = 1735689600 // 2025-01-01T00:00:00Z

// countTokens counts the mock's tokens in text: its whitespace-separated words.
func countTokens(text string) int { return len(strings.Fields(text)) }

// contentText returns the text of a chat message's content, which OpenAI allows to be a
// string, null, or an array of parts of which the "text" ones count.
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	texts := make([]string, len(parts))
	for i, p := range parts {
		texts[i] = p.Text
	}
	return strings.Join(texts, " ")
}

// answerID derives a stable response id from the request body.
func answerID(prefix string, body []byte) string {
	sum := sha256.Sum256(body)
	return prefix + "-mock-" + hex.EncodeToString(sum[:6])
}

// completionLimit returns the smallest positive limit given, or 0 when none is.
func completionLimit(limits ...*int) int {
	limit := 0
	for _, l := range limits {
		if l != nil && *l > 0 && (limit == 0 || *l < limit) {
			limit = *l
		}
	}
	return limit
}

// cutWords splits reply into words, keeping at most limit of them (0 means no limit),
// and reports the finish reason.
func cutWords(reply string, limit int) ([]string, string) {
	words := strings.Fields(reply)
	if limit > 0 && limit < len(words) {
		return words[:limit], "length"
	}
	return words, "stop"
}

// usage is OpenAI's token usage object.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func newUsage(prompt, completion int) *usage {
	return &usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

// reported returns u as the mock reports it: nil under Options.NoUsage.
func (s *Server) reported(u *usage) *usage {
	if s.opts.NoUsage {
		return nil
	}
	return u
}

// streamOptions is the request's stream_options.
type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

func (o *streamOptions) includeUsage() bool { return o != nil && o.IncludeUsage }
