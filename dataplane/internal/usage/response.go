package usage

import "encoding/json"

// Usage is token usage as a provider reports it.
type Usage struct {
	PromptTokens, CompletionTokens, TotalTokens int64
}

// usageJSON is OpenAI's usage object. Counts are decoded as float64 so that an
// upstream writing 12.0 is still understood; a member of another type stays nil.
type usageJSON struct {
	PromptTokens     *float64 `json:"prompt_tokens"`
	CompletionTokens *float64 `json:"completion_tokens"`
	TotalTokens      *float64 `json:"total_tokens"`
}

// maxCount bounds a reported count, so that a hostile upstream cannot overflow the
// budget arithmetic. It is far above any real request.
const maxCount = 1 << 40

func toCount(f *float64) int64 {
	switch {
	case f == nil || *f <= 0:
		return 0
	case *f >= maxCount:
		return maxCount
	}
	return int64(*f)
}

// parseUsage decodes a usage object. It reports false unless raw is an object with
// at least one numeric count. A missing total is prompt + completion; a missing
// prompt or completion count is derived from the total when it can be (embeddings
// report only prompt_tokens and total_tokens).
func parseUsage(raw []byte) (Usage, bool) {
	if firstByte(raw) != '{' {
		return Usage{}, false
	}
	var j usageJSON
	_ = json.Unmarshal(raw, &j) // a member of the wrong type stays nil
	if j.PromptTokens == nil && j.CompletionTokens == nil && j.TotalTokens == nil {
		return Usage{}, false
	}
	u := Usage{PromptTokens: toCount(j.PromptTokens), CompletionTokens: toCount(j.CompletionTokens), TotalTokens: toCount(j.TotalTokens)}
	switch {
	case j.TotalTokens == nil:
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	case j.CompletionTokens == nil:
		u.CompletionTokens = max(u.TotalTokens-u.PromptTokens, 0)
	case j.PromptTokens == nil:
		u.PromptTokens = max(u.TotalTokens-u.CompletionTokens, 0)
	}
	return u, true
}

// topMember returns the value of obj's last top-level member named member (the one a
// JSON parser keeps), or nil. On invalid JSON it returns what the scanner reads.
func topMember(obj []byte, member string) []byte {
	var found []byte
	for it := members(obj); ; {
		k, v, ok := it.next()
		if !ok {
			return found
		}
		if keyIs(k, member) {
			found = v
		}
	}
}

// FromResponse extracts "usage" from a non-streamed OpenAI response body (chat,
// completion or embeddings). It reports false when the body is not a JSON object or
// has no usage object with a numeric count; CompletionText then gives the text to
// count instead.
func FromResponse(body []byte) (u Usage, ok bool) {
	if firstByte(body) != '{' || !json.Valid(body) {
		return Usage{}, false
	}
	return parseUsage(topMember(body, "usage"))
}

// CompletionText returns the generated text of a non-streamed OpenAI response body,
// concatenated over its choices (see appendChoices): what to count with CountText
// when FromResponse finds no usage. A body that is not a JSON object gives "".
func CompletionText(body []byte) string {
	if firstByte(body) != '{' || !json.Valid(body) {
		return ""
	}
	return string(appendChoices(nil, topMember(body, "choices")))
}
