package api

import (
	"bytes"
	"encoding/json"

	"github.com/portcullis-gw/portcullis/dataplane/internal/anthropic"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/guardrails"
)

// streamGuard applies the output guardrails to a streamed answer in the client's
// API: each choice's (OpenAI) or content block's (Anthropic) text goes through a
// guardrails.Stream, which holds back what could still grow into a finding; the
// events carry what it releases, a flush event precedes the end of a choice or
// block, and a blocking family ends the stream with content_blocked and no [DONE].
// It is not safe for concurrent use.
type streamGuard struct {
	g       *guarded
	api     clientAPI
	streams map[int]*guardrails.Stream
	counted map[int]int // findings of each stream already in g.flags
	// last is the last OpenAI chunk's id, object, created and model, for the
	// chunks a flush adds.
	last map[string]any
}

// newStreamGuard is the stream guard of x's answer in api, nil when it needs none.
func newStreamGuard(x *exchange, api clientAPI) *streamGuard {
	if !x.guard.guardsAnswer() {
		return nil
	}
	return &streamGuard{g: x.guard, api: api, streams: map[int]*guardrails.Stream{}, counted: map[int]int{}}
}

func (s *streamGuard) stream(i int) *guardrails.Stream {
	st, ok := s.streams[i]
	if !ok {
		st = s.g.policy.NewStream(guardrails.Output, s.g.redactor)
		s.streams[i] = st
	}
	return st
}

// text is what the client gets of a piece of choice or block i: released by its
// stream (whole when only pseudonymising), with input placeholders put back.
func (s *streamGuard) text(i int, delta string, end bool) (string, error) {
	if !s.g.policy.On(guardrails.Output) {
		return s.g.restore(delta), nil
	}
	st := s.stream(i)
	out, blocked := st.Push(delta)
	if end && blocked == "" {
		var rest string
		rest, blocked = st.Flush()
		out += rest
	}
	for _, f := range st.Findings[s.counted[i]:] {
		s.g.flags[guardFlag{Family: f.Family, Type: f.Type, Direction: guardrails.Output, Action: f.Action}]++
	}
	s.counted[i] = len(st.Findings)
	if blocked != "" {
		return "", contentBlocked(blocked, guardrails.Output)
	}
	return s.g.restore(out), nil
}

// events rewrites the client-format events in out (one or more); stop is set, with
// the content_blocked error event written last, when the answer is blocked.
func (s *streamGuard) events(out []byte) ([]byte, error) {
	if len(out) == 0 {
		return out, nil
	}
	var res []byte
	for _, ev := range bytes.SplitAfter(out, []byte("\n\n")) {
		if len(bytes.TrimSpace(ev)) == 0 {
			continue
		}
		b, err := s.event(ev)
		res = append(res, b...)
		if err != nil {
			return append(res, s.errorEvent(err)...), &guardStop{err: apierr.From(err)}
		}
	}
	return res, nil
}

// errorEvent is the end of a blocked stream in the client's API.
func (s *streamGuard) errorEvent(err error) []byte {
	e := apierr.From(err)
	if s.api == apiAnthropic {
		return anthropic.ErrorEvent(e.Status(), e.Message)
	}
	b, _ := json.Marshal(e.OpenAI()) // an apierr body always marshals
	return append(append([]byte("data: "), b...), "\n\n"...)
}

// event rewrites one event.
func (s *streamGuard) event(ev []byte) ([]byte, error) {
	head, data, ok := splitData(ev)
	if !ok {
		return ev, nil
	}
	if string(data) == "[DONE]" {
		flush, err := s.flushAll()
		return append(flush, ev...), err
	}
	v, err := decodeTree(data)
	obj, isObj := v.(map[string]any)
	if err != nil || !isObj {
		return ev, nil
	}
	if s.api == apiAnthropic {
		return s.anthropicEvent(ev, head, obj)
	}
	return s.openAIChunk(ev, head, obj)
}

// openAIChunk rewrites a chat or completion chunk: each choice's delta content (or
// text), flushed into the chunk that finishes the choice.
func (s *streamGuard) openAIChunk(ev, head []byte, obj map[string]any) ([]byte, error) {
	choices, _ := obj["choices"].([]any)
	if len(choices) == 0 {
		return ev, nil // the usage chunk
	}
	s.last = map[string]any{"id": obj["id"], "object": obj["object"], "created": obj["created"], "model": obj["model"]}
	for _, c := range choices {
		choice, _ := c.(map[string]any)
		if choice == nil {
			continue
		}
		i := index(choice["index"])
		end := choice["finish_reason"] != nil
		if delta, _ := choice["delta"].(map[string]any); delta != nil {
			if t, ok := delta["content"].(string); ok || end {
				out, err := s.text(i, t, end)
				if err != nil {
					return nil, err
				}
				if ok || out != "" {
					delta["content"] = out
				}
			}
		} else if t, ok := choice["text"].(string); ok || end {
			out, err := s.text(i, t, end)
			if err != nil {
				return nil, err
			}
			choice["text"] = out
		}
		if end {
			delete(s.streams, i)
		}
	}
	return rebuild(head, obj)
}

// anthropicEvent rewrites a text delta, and flushes a block's held text into a
// delta of its own before the block stops.
func (s *streamGuard) anthropicEvent(ev, head []byte, obj map[string]any) ([]byte, error) {
	i := index(obj["index"])
	switch obj["type"] {
	case "content_block_delta":
		delta, _ := obj["delta"].(map[string]any)
		t, ok := delta["text"].(string)
		if !ok || delta["type"] != "text_delta" {
			return ev, nil
		}
		out, err := s.text(i, t, false)
		if err != nil {
			return nil, err
		}
		delta["text"] = out
		return rebuild(head, obj)
	case "content_block_stop":
		rest, err := s.text(i, "", true)
		delete(s.streams, i)
		if err != nil {
			return nil, err
		}
		if rest == "" {
			return ev, nil
		}
		flush, err := rebuild([]byte("event: content_block_delta\n"), map[string]any{"type": "content_block_delta", "index": i,
			"delta": map[string]any{"type": "text_delta", "text": rest}})
		return append(flush, ev...), err
	}
	return ev, nil
}

// flushAll releases what every open choice holds, as chunks of their own, before an
// OpenAI stream's [DONE].
func (s *streamGuard) flushAll() ([]byte, error) {
	var out []byte
	for i := range s.streams {
		rest, err := s.text(i, "", true)
		if err != nil {
			return out, err
		}
		if rest == "" {
			continue
		}
		chunk := map[string]any{"choices": []any{map[string]any{"index": i, "delta": map[string]any{"content": rest}, "finish_reason": nil}}}
		for k, v := range s.last {
			chunk[k] = v
		}
		b, err := rebuild(nil, chunk)
		if err != nil {
			return out, err
		}
		out = append(out, b...)
	}
	clear(s.streams)
	return out, nil
}

// splitData splits an event into the lines before its data line and its data.
func splitData(ev []byte) (head, data []byte, ok bool) {
	for pos := 0; pos < len(ev); {
		line, next := ev[pos:], len(ev)
		if n := bytes.IndexByte(ev[pos:], '\n'); n >= 0 {
			line, next = ev[pos:pos+n], pos+n+1
		}
		if d, found := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\r")), []byte("data:")); found {
			return ev[:pos], bytes.TrimSpace(d), true
		}
		pos = next
	}
	return nil, nil, false
}

// rebuild is an event of head's lines and data obj.
func rebuild(head []byte, obj any) ([]byte, error) {
	data, err := encodeTree(obj)
	if err != nil {
		return nil, err
	}
	out := append([]byte{}, head...)
	out = append(out, "data: "...)
	out = append(out, data...)
	return append(out, "\n\n"...), nil
}

// index reads a JSON index (json.Number or float64), 0 when absent.
func index(v any) int {
	switch n := v.(type) {
	case json.Number:
		i, _ := n.Int64()
		return int(i)
	case float64:
		return int(n)
	}
	return 0
}
