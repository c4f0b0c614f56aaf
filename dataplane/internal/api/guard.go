package api

import (
	"context"
	"encoding/json"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Guard is the hook the guardrails use: it sees the text of every request before
// admission and, through the StreamWatcher it returns, each text delta of a streamed
// answer. Options.Guard nil means no guard; the request path then decodes no text.
//
// Non-streamed answers are relayed as they arrive and reach no watcher yet: a guard
// that must judge them before the client does needs the relay to buffer them first.
type Guard interface {
	// Inspect is called once per request, after authorization and before the
	// request counts against the client's limits. An error refuses the request
	// (an *apierr.Error is rendered as it is). The watcher, nil for none, gets the
	// answer's streamed text.
	Inspect(ctx context.Context, r GuardRequest) (StreamWatcher, error)
}

// StreamWatcher watches the text of one streamed answer.
type StreamWatcher interface {
	// Delta is called with each text delta, in order, before it reaches the client.
	// The slice is valid only during the call. An error ends the stream there, with
	// the client API's error event.
	Delta(text []byte) error
}

// GuardRequest is what a Guard is shown of a request.
type GuardRequest struct {
	ClientID, Tenant string
	Model            string // as the client asked for it
	Operation        string // policy.Op*
	Messages         []Message
}

// Message is one piece of a request's text: a chat or Messages API turn (role
// "system", "user", "assistant", "tool"), or a completion prompt or embedding input
// (role "user"). Only text is kept: images and tool calls are left out.
type Message struct {
	Role, Text string
}

// requestMessages decodes the text of req for a Guard. Members of an unexpected
// shape are left out, as the upstream will judge them.
func requestMessages(req *request) []Message {
	var msgs []Message
	switch req.op {
	case policy.OpChat, policy.OpMessages:
		if raw, ok := req.fields["system"]; ok { // the Messages API's system prompt
			msgs = appendContent(msgs, "system", raw)
		}
		var turns []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		_ = json.Unmarshal(req.fields["messages"], &turns)
		for _, t := range turns {
			msgs = appendContent(msgs, t.Role, t.Content)
		}
	case policy.OpTextCompletion:
		msgs = appendInputs(msgs, req.fields["prompt"])
	case policy.OpEmbeddings:
		msgs = appendInputs(msgs, req.fields["input"])
	}
	return msgs
}

// appendContent appends a message content: a string, or an array of parts whose
// text parts (OpenAI's {"type":"text","text":…}, Anthropic's text blocks) count.
func appendContent(msgs []Message, role string, raw json.RawMessage) []Message {
	if string(raw) == "null" {
		return msgs
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return append(msgs, Message{Role: role, Text: s})
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	for _, p := range parts {
		if p.Type == "text" {
			msgs = append(msgs, Message{Role: role, Text: p.Text})
		}
	}
	return msgs
}

// appendInputs appends a prompt or an embedding input: a string or an array of
// strings (arrays of token ids carry no text).
func appendInputs(msgs []Message, raw json.RawMessage) []Message {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return append(msgs, Message{Role: "user", Text: s})
	}
	var list []json.RawMessage
	_ = json.Unmarshal(raw, &list)
	for _, el := range list {
		if json.Unmarshal(el, &s) == nil {
			msgs = append(msgs, Message{Role: "user", Text: s})
		}
	}
	return msgs
}
