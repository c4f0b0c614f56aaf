package mockupstream

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	Stream        bool            `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	MaxTokens     *int            `json:"max_tokens"`
}

type textCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []textChoice `json:"choices"`
	Usage   *usage       `json:"usage,omitempty"`
}

type textChoice struct {
	Text         string    `json:"text"`
	Index        int       `json:"index"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

// prompts parses a completion prompt, which may be a string or an array of strings.
func prompts(raw json.RawMessage) ([]string, error) {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil && len(many) > 0 {
		return many, nil
	}
	return nil, errInvalid("prompt", "'prompt' must be a string or a non-empty array of strings")
}

// completions answers POST /v1/completions with one choice per prompt.
func (s *Server) completions(w http.ResponseWriter, r *http.Request, body []byte, fail Failure) error {
	var req completionRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.Model == "" {
		return errInvalid("model", "you must provide a model parameter")
	}
	ps, err := prompts(req.Prompt)
	if err != nil {
		return err
	}
	id := answerID("cmpl", body)
	limit := completionLimit(req.MaxTokens)
	texts := make([][]string, len(ps))
	finishes := make([]string, len(ps))
	promptTokens, completionTokens := 0, 0
	for i, p := range ps {
		promptTokens += countTokens(p)
		reply := fmt.Sprintf("mock completion from %s for %d words", s.opts.Name, countTokens(p))
		texts[i], finishes[i] = cutWords(reply, limit)
		completionTokens += len(texts[i])
	}
	u := newUsage(promptTokens, completionTokens)

	if !req.Stream {
		choices := make([]textChoice, len(ps))
		for i := range ps {
			choices[i] = textChoice{Text: strings.Join(texts[i], " "), Index: i, FinishReason: &finishes[i]}
		}
		return writeJSON(w, textCompletion{
			ID: id, Object: "text_completion", Created: created, Model: req.Model, Choices: choices, Usage: s.reported(u),
		}, fail)
	}

	sse := s.startSSE(w, r, fail)
	chunk := func(choices []textChoice, u *usage) textCompletion {
		return textCompletion{ID: id, Object: "text_completion", Created: created, Model: req.Model, Choices: choices, Usage: u}
	}
	for i := range ps {
		for j, word := range texts[i] {
			if j > 0 {
				word = " " + word
			}
			if err := sse.event(chunk([]textChoice{{Text: word, Index: i}}, nil)); err != nil {
				return err
			}
		}
		if err := sse.event(chunk([]textChoice{{Index: i, FinishReason: &finishes[i]}}, nil)); err != nil {
			return err
		}
	}
	if req.StreamOptions.includeUsage() && !s.opts.NoUsage {
		if err := sse.event(chunk([]textChoice{}, u)); err != nil {
			return err
		}
	}
	return sse.done()
}
