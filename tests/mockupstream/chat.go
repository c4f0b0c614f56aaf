package mockupstream

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

type chatRequest struct {
	Model               string         `json:"model"`
	Messages            []chatMessage  `json:"messages"`
	Stream              bool           `json:"stream"`
	StreamOptions       *streamOptions `json:"stream_options"`
	MaxTokens           *int           `json:"max_tokens"`
	MaxCompletionTokens *int           `json:"max_completion_tokens"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type chatCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []chatChoice `json:"choices"`
	Usage             *usage       `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int        `json:"index"`
	Message      *chatReply `json:"message,omitempty"`
	Delta        *chatReply `json:"delta,omitempty"`
	Logprobs     *struct{}  `json:"logprobs"`
	FinishReason *string    `json:"finish_reason"`
}

type chatReply struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
	Refusal *string `json:"refusal,omitempty"`
}

// chat answers POST /v1/chat/completions.
func (s *Server) chat(w http.ResponseWriter, r *http.Request, body []byte, fail Failure) error {
	var req chatRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	if req.Model == "" {
		return errInvalid("model", "you must provide a model parameter")
	}
	if len(req.Messages) == 0 {
		return errInvalid("messages", "'messages' must contain at least one message")
	}
	promptTokens := len(req.Messages)
	for _, m := range req.Messages {
		promptTokens += countTokens(contentText(m.Content))
	}
	reply := fmt.Sprintf("mock reply from %s to %d messages", s.opts.Name, len(req.Messages))
	words, finish := cutWords(reply, completionLimit(req.MaxTokens, req.MaxCompletionTokens))
	echo, echoed := echoReply(contentText(req.Messages[len(req.Messages)-1].Content))
	if echoed {
		words, finish = echoChunks(echo), "stop"
	}
	u := newUsage(promptTokens, len(words))
	id := answerID("chatcmpl", body)

	if !req.Stream {
		text := strings.Join(words, " ")
		if echoed {
			text = echo
		}
		return writeJSON(w, chatCompletion{
			ID: id, Object: "chat.completion", Created: created, Model: req.Model,
			SystemFingerprint: "fp_mock",
			Choices: []chatChoice{{
				Message:      &chatReply{Role: "assistant", Content: &text},
				FinishReason: &finish,
			}},
			Usage: s.reported(u),
		}, fail)
	}

	sse := s.startSSE(w, r, fail)
	chunk := func(choices []chatChoice, u *usage) chatCompletion {
		return chatCompletion{
			ID: id, Object: "chat.completion.chunk", Created: created, Model: req.Model,
			SystemFingerprint: "fp_mock", Choices: choices, Usage: u,
		}
	}
	empty := ""
	if err := sse.event(chunk([]chatChoice{{Delta: &chatReply{Role: "assistant", Content: &empty}}}, nil)); err != nil {
		return err
	}
	for i, word := range words {
		if i > 0 && !echoed {
			word = " " + word
		}
		if err := sse.event(chunk([]chatChoice{{Delta: &chatReply{Content: &word}}}, nil)); err != nil {
			return err
		}
	}
	if err := sse.event(chunk([]chatChoice{{Delta: &chatReply{}, FinishReason: &finish}}, nil)); err != nil {
		return err
	}
	if req.StreamOptions.includeUsage() && !s.opts.NoUsage {
		if err := sse.event(chunk([]chatChoice{}, u)); err != nil {
			return err
		}
	}
	return sse.done()
}
