package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/portcullis-gw/portcullis/shared/jsontext"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// StreamError is returned by StreamTranslator.Translate when the stream fails: the
// upstream sent an error event, or an event that cannot be translated. The events
// Translate returned with it already end the client's stream with an error event.
type StreamError struct {
	Code    string // a code of the shared/apierr registry
	Message string // safe to show the client
	Cause   error  // internal; nil for an upstream error event
}

func (e *StreamError) Error() string {
	if e.Cause != nil {
		return fmt.Sprintf("anthropic stream: %s: %s: %v", e.Code, e.Message, e.Cause)
	}
	return fmt.Sprintf("anthropic stream: %s: %s", e.Code, e.Message)
}

func (e *StreamError) Unwrap() error { return e.Cause }

// upstreamError is the code of a stream that broke on the upstream's side.
const upstreamError = string(apierr.UpstreamError)

// errBeforeStart is the cause of content that arrives before message_start.
var errBeforeStart = errors.New("event before message_start")

// StreamTranslator turns one Anthropic Messages event stream into an OpenAI
// chat.completion.chunk stream: a role chunk first, text and tool-call deltas, a
// last chunk with finish_reason, a usage-only chunk if the client asked for usage,
// and "data: [DONE]". An upstream error event becomes an OpenAI error event and no
// [DONE]. A StreamTranslator belongs to one stream and is not safe for concurrent
// use.
type StreamTranslator struct {
	model        string
	includeUsage bool
	created      int64

	started  bool   // message_start seen, role chunk sent
	finished bool   // the finish_reason chunk sent
	ended    bool   // [DONE] or an error event sent; later events are ignored
	failed   bool   // ended by an error event
	prefix   []byte // every chunk's opening, up to and including `"choices":[`
	finish   string // OpenAI finish_reason, from message_delta
	tools    []toolState
	usage    usage
	hasUsage bool

	ev      streamEvent // decoded event, reused
	evUsage usage       // decode target of ev.Usage and ev.Message.Usage, reused
	data    []byte      // the data of a multi-line event
	delta   []byte      // the delta of the chunk at hand
	out     []byte      // Translate's result, reused
	text    string      // the text delta of the event at hand
}

// toolState follows one tool_use content block.
type toolState struct {
	block    int64 // the Anthropic content block index
	index    int   // the OpenAI tool call index
	argsSent bool  // some arguments have been sent
}

// streamEvent is the union of Anthropic's stream events, as far as they matter.
type streamEvent struct {
	Type    string `json:"type"`
	Index   int64  `json:"index"`
	Message struct {
		ID    string `json:"id"`
		Usage *usage `json:"usage"`
	} `json:"message"`
	ContentBlock contentBlock `json:"content_block"`
	Delta        struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *usage `json:"usage"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// NewStreamTranslator returns a translator for one stream answering publicModel, the
// model name the client asked for. includeUsage is the client's
// stream_options.include_usage.
func NewStreamTranslator(publicModel string, includeUsage bool) *StreamTranslator {
	return &StreamTranslator{model: publicModel, includeUsage: includeUsage, created: time.Now().Unix()}
}

// Usage returns the tokens the upstream reported so far: prompt tokens including
// cached input, and completion tokens. ok is false until the upstream reported any.
func (t *StreamTranslator) Usage() (prompt, completion int64, ok bool) {
	return t.usage.prompt(), t.usage.OutputTokens, t.hasUsage
}

// Done reports whether the stream ended well: message_stop arrived and [DONE] was
// returned. A stream that ends before Done was cut.
func (t *StreamTranslator) Done() bool { return t.ended && !t.failed }

// EventText returns the text delta of the event the last Translate took: empty
// unless it was a text_delta.
func (t *StreamTranslator) EventText() string { return t.text }

// Translate takes one raw server-sent event, as upstream.EventReader yields it
// ("event: x\ndata: {...}\n\n"), and returns the OpenAI events it becomes, zero or
// more concatenated. The result is valid until the next call. On failure it returns
// a *StreamError together with an OpenAI error event that ends the client's stream;
// write the events, then stop. Events after the end of the stream are ignored.
func (t *StreamTranslator) Translate(event []byte) ([]byte, error) {
	t.out, t.text = t.out[:0], ""

	if t.ended {
		return nil, nil
	}
	name, data := t.parseEvent(event)
	if len(data) == 0 || name == "ping" {
		return nil, nil // a comment, a keep-alive, a blank line or a ping
	}
	t.ev = streamEvent{}
	t.evUsage = usage{InputTokens: -1, OutputTokens: -1, CacheCreationInputTokens: -1, CacheReadInputTokens: -1}
	t.ev.Usage, t.ev.Message.Usage = &t.evUsage, &t.evUsage
	if err := json.Unmarshal(data, &t.ev); err != nil {
		return t.fail(upstreamError, "the upstream stream was malformed", fmt.Errorf("decode %s event: %w", name, err))
	}
	typ := t.ev.Type
	if typ == "" {
		typ = name
	}
	switch typ {
	case "message_start":
		return t.start()
	case "error":
		code, msg := mapError(http.StatusInternalServerError, t.ev.Error.Type, t.ev.Error.Message)
		return t.fail(code, msg, nil)
	case "ping":
		return nil, nil
	}
	if !t.started {
		switch typ {
		case "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop":
			return t.fail(upstreamError, "the upstream stream was malformed", fmt.Errorf("%s: %w", typ, errBeforeStart))
		}
		return nil, nil
	}
	switch typ {
	case "content_block_start":
		t.blockStart()
	case "content_block_delta":
		t.blockDelta()
	case "content_block_stop":
		t.blockStop()
	case "message_delta":
		t.addUsage()
		if t.ev.Delta.StopReason != "" {
			t.finish = finishReason(t.ev.Delta.StopReason)
		}
		t.finishChunk()
	case "message_stop":
		t.finishChunk()
		if t.includeUsage {
			t.usageChunk()
		}
		t.out = append(t.out, "data: [DONE]\n\n"...)
		t.ended = true
	}
	return t.out, nil
}

// parseEvent returns an event's name and its data, the data lines joined by "\n".
func (t *StreamTranslator) parseEvent(event []byte) (name string, data []byte) {
	lines := 0
	for len(event) > 0 {
		line := event
		if i := bytes.IndexByte(event, '\n'); i >= 0 {
			line, event = event[:i], event[i+1:]
		} else {
			event = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			name = string(value)
		case "data":
			switch lines++; lines {
			case 1:
				data = value
			case 2:
				t.data = append(append(append(t.data[:0], data...), '\n'), value...)
				data = t.data
			default:
				t.data = append(append(t.data, '\n'), value...)
				data = t.data
			}
		}
	}
	return name, data
}

var (
	roleDelta  = []byte(`{"role":"assistant","content":"","refusal":null}`)
	emptyDelta = []byte(`{}`)
)

func (t *StreamTranslator) start() ([]byte, error) {
	if t.started {
		return t.fail(upstreamError, "the upstream stream was malformed", errors.New("a second message_start"))
	}
	t.started = true
	t.addUsage()
	p := append(t.prefix[:0], `data: {"id":`...)
	p = jsontext.AppendString(p, completionID(t.ev.Message.ID))
	p = append(p, `,"object":"chat.completion.chunk","created":`...)
	p = strconv.AppendInt(p, t.created, 10)
	p = append(p, `,"model":`...)
	p = jsontext.AppendString(p, t.model)
	t.prefix = append(p, `,"choices":[`...)
	t.chunk(roleDelta, "")
	return t.out, nil
}

// addUsage takes the usage of a message_start or message_delta event. Anthropic's
// counts are cumulative, and a message_delta may leave some out.
func (t *StreamTranslator) addUsage() {
	u := t.evUsage
	if u.InputTokens < 0 && u.OutputTokens < 0 && u.CacheCreationInputTokens < 0 && u.CacheReadInputTokens < 0 {
		return
	}
	t.hasUsage = true
	t.usage.InputTokens = max(t.usage.InputTokens, u.InputTokens)
	t.usage.OutputTokens = max(t.usage.OutputTokens, u.OutputTokens)
	t.usage.CacheCreationInputTokens = max(t.usage.CacheCreationInputTokens, u.CacheCreationInputTokens)
	t.usage.CacheReadInputTokens = max(t.usage.CacheReadInputTokens, u.CacheReadInputTokens)
}

func (t *StreamTranslator) blockStart() {
	b := &t.ev.ContentBlock
	switch b.Type {
	case "text":
		if b.Text != "" {
			t.textChunk(b.Text)
		}
	case "tool_use":
		ts := toolState{block: t.ev.Index, index: len(t.tools)}
		t.tools = append(t.tools, ts)
		d := append(t.delta[:0], `{"tool_calls":[{"index":`...)
		d = strconv.AppendInt(d, int64(ts.index), 10)
		d = append(d, `,"id":`...)
		d = jsontext.AppendString(d, b.ID)
		d = append(d, `,"type":"function","function":{"name":`...)
		d = jsontext.AppendString(d, b.Name)
		t.delta = append(d, `,"arguments":""}}]}`...)
		t.chunk(t.delta, "")
		// A non-empty input on the start block is sent now; input_json_delta
		// events normally carry it instead.
		if args, err := compactArguments(b.Input); err == nil && args != "{}" {
			t.argsChunk(&t.tools[len(t.tools)-1], args)
		}
	}
}

func (t *StreamTranslator) tool(block int64) *toolState {
	for i := len(t.tools) - 1; i >= 0; i-- {
		if t.tools[i].block == block {
			return &t.tools[i]
		}
	}
	return nil
}

func (t *StreamTranslator) blockDelta() {
	switch t.ev.Delta.Type {
	case "text_delta":
		if t.ev.Delta.Text != "" {
			t.text = t.ev.Delta.Text
			t.textChunk(t.ev.Delta.Text)
		}
	case "input_json_delta":
		if ts := t.tool(t.ev.Index); ts != nil && t.ev.Delta.PartialJSON != "" {
			t.argsChunk(ts, t.ev.Delta.PartialJSON)
		}
	}
}

// blockStop gives a tool call without arguments the empty object, as OpenAI does.
func (t *StreamTranslator) blockStop() {
	if ts := t.tool(t.ev.Index); ts != nil && !ts.argsSent {
		t.argsChunk(ts, "{}")
	}
}

func (t *StreamTranslator) textChunk(text string) {
	d := append(t.delta[:0], `{"content":`...)
	d = jsontext.AppendString(d, text)
	t.delta = append(d, '}')
	t.chunk(t.delta, "")
}

func (t *StreamTranslator) argsChunk(ts *toolState, args string) {
	ts.argsSent = true
	d := append(t.delta[:0], `{"tool_calls":[{"index":`...)
	d = strconv.AppendInt(d, int64(ts.index), 10)
	d = append(d, `,"function":{"arguments":`...)
	d = jsontext.AppendString(d, args)
	t.delta = append(d, `}}]}`...)
	t.chunk(t.delta, "")
}

// finishChunk sends the chunk with finish_reason, once.
func (t *StreamTranslator) finishChunk() {
	if t.finished {
		return
	}
	t.finished = true
	finish := t.finish
	if finish == "" {
		finish = "stop"
	}
	t.chunk(emptyDelta, finish)
}

// chunk appends a chat.completion.chunk with one choice holding delta, a JSON
// object, and finish_reason, null when empty.
func (t *StreamTranslator) chunk(delta []byte, finish string) {
	o := append(t.out, t.prefix...)
	o = append(o, `{"index":0,"delta":`...)
	o = append(o, delta...)
	o = append(o, `,"logprobs":null,"finish_reason":`...)
	if finish == "" {
		o = append(o, "null"...)
	} else {
		o = jsontext.AppendString(o, finish)
	}
	t.out = append(o, "}]}\n\n"...)
}

// usageChunk appends the usage-only chunk OpenAI sends when asked for usage.
func (t *StreamTranslator) usageChunk() {
	u := chatUsageOf(t.usage)
	o := append(t.out, t.prefix...)
	o = append(o, `],"usage":{"prompt_tokens":`...)
	o = strconv.AppendInt(o, u.PromptTokens, 10)
	o = append(o, `,"completion_tokens":`...)
	o = strconv.AppendInt(o, u.CompletionTokens, 10)
	o = append(o, `,"total_tokens":`...)
	o = strconv.AppendInt(o, u.TotalTokens, 10)
	o = append(o, `,"prompt_tokens_details":{"cached_tokens":`...)
	o = strconv.AppendInt(o, u.PromptTokensDetails.CachedTokens, 10)
	t.out = append(o, "}}}\n\n"...)
}

// fail ends the stream with an OpenAI error event.
func (t *StreamTranslator) fail(code, message string, cause error) ([]byte, error) {
	t.ended, t.failed = true, true
	body := apierr.OpenAIBody{Error: apierr.OpenAIError{Message: message, Type: apierr.Lookup(apierr.Code(code)).Type, Code: apierr.Code(code)}}
	t.out = append(t.out, "data: "...)
	t.out = append(t.out, mustMarshal(body)...)
	t.out = append(t.out, "\n\n"...)
	return t.out, &StreamError{Code: code, Message: message, Cause: cause}
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("anthropic: encode %T: %v", v, err)) // only called on types that always encode
	}
	return b
}
