package usage

import (
	"bytes"
	"encoding/json"
)

// maxStreamText bounds the completion text a StreamMeter keeps for counting; text
// beyond it is counted one token per byte.
const maxStreamText = 4 << 20

// StreamMeter watches one chat or completions SSE stream event by event, as
// upstream.EventReader yields the events, and decides what reaches the client. It
// records the usage the upstream reports, hides the usage the client did not ask for,
// and keeps the text actually delivered so that a stream without usage, or one cut
// midway, can still be counted. A StreamMeter belongs to one stream and is not safe
// for concurrent use.
type StreamMeter struct {
	hideUsage bool
	usage     Usage
	hasUsage  bool
	scratch   []byte // the text of the chunk at hand
	text      []byte // delivered completion text, at most textLimit bytes
	textLimit int    // maxStreamText; smaller in tests
	excess    int64  // bytes of delivered text beyond textLimit
	// eventText is the text of the event at hand, kept when keepEventText is set.
	eventText     []byte
	keepEventText bool
}

// NewStreamMeter returns a meter for one stream. hideUsage means the client did not
// ask for usage (stream_options.include_usage), so the usage the gateway asked the
// upstream for must not reach it.
func NewStreamMeter(hideUsage bool) *StreamMeter {
	return &StreamMeter{hideUsage: hideUsage, textLimit: maxStreamText}
}

// Usage returns the usage the upstream reported, and false if it reported none. When
// several chunks carry usage, the last one counts.
func (m *StreamMeter) Usage() (Usage, bool) { return m.usage, m.hasUsage }

// CompletionTokens counts, with the tokenizer, the completion text delivered so far
// (the text, content, refusal, reasoning and tool-call names and arguments of the
// forwarded chunks), plus one token per byte beyond the first 4 MiB of it.
func (m *StreamMeter) CompletionTokens() int64 {
	return CountText(string(m.text)) + m.excess
}

// KeepEventText makes the meter keep the text of each observed event for EventText.
func (m *StreamMeter) KeepEventText() { m.keepEventText = true }

// EventText returns the completion text of the event the last Observe saw (empty
// unless KeepEventText was called). It is valid until the next Observe.
func (m *StreamMeter) EventText() []byte { return m.eventText }

func (m *StreamMeter) addText(s []byte) {
	limit := m.textLimit
	if limit == 0 { // a zero StreamMeter
		limit = maxStreamText
	}
	if room := limit - len(m.text); len(s) > room {
		m.text = append(m.text, s[:room]...)
		m.excess += int64(len(s) - room)
		return
	}
	m.text = append(m.text, s...)
}

// Observe inspects one event and returns what to forward to the client: ev itself
// (not a copy) in the common case, nil to drop it, or rewritten bytes.
//
// An event is parsed as the SSE specification says (lines end with "\n", "\r\n" or
// "\r"; a blank line dispatches; the data is the "data" lines joined with "\n"), so
// the meter sees what a client's SSE parser would. If the bytes hold several
// dispatches, each is handled on its own. For each data that is a JSON object:
//   - a non-null "usage" object is recorded (see Usage);
//   - with hideUsage, a chunk with a non-null "usage" and no choices (an empty,
//     absent or null "choices") is dropped, and one with choices is forwarded
//     rewritten as a single "data: " line holding the object without its "usage"
//     members (the event's other lines are kept, and a blank line ends it);
//   - the text of the chunks forwarded is kept for CompletionTokens.
//
// "data: [DONE]", comments, events without data and data that is not a JSON object
// pass through untouched; nothing is ever an error.
func (m *StreamMeter) Observe(ev []byte) []byte {
	m.eventText = m.eventText[:0]
	var out []byte // nil until an earlier dispatch was dropped or rewritten
	changed := false
	start := 0 // start of the current dispatch in ev
	var data []byte
	dataLines := 0
	dispatch := func(end int) {
		verdict, rewritten := m.inspect(data, dataLines)
		if verdict != keep && !changed {
			changed = true
			out = append(make([]byte, 0, len(ev)), ev[:start]...)
		}
		switch {
		case verdict == rewrite:
			out = appendRewritten(out, ev[start:end], rewritten)
		case verdict == keep && changed:
			out = append(out, ev[start:end]...)
		}
		start, data, dataLines = end, nil, 0
	}
	for i := 0; i < len(ev); {
		line, next := nextLine(ev, i)
		if len(line) == 0 {
			dispatch(next)
		} else if value, ok := dataValue(line); ok {
			if dataLines == 0 {
				data = value
			} else {
				if dataLines == 1 {
					data = append([]byte(nil), data...)
				}
				data = append(append(data, '\n'), value...)
			}
			dataLines++
		}
		i = next
	}
	if start < len(ev) { // lines without the blank line that ends an event
		dispatch(len(ev))
	}
	if !changed {
		return ev
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// nextLine returns the line of b starting at i without its line ending, and the
// index after the line ending. "\r\n", "\n" and "\r" end a line.
func nextLine(b []byte, i int) (line []byte, next int) {
	rest := b[i:]
	lf := bytes.IndexByte(rest, '\n')
	scope := rest
	if lf >= 0 {
		scope = rest[:lf]
	}
	if cr := bytes.IndexByte(scope, '\r'); cr >= 0 {
		if cr+1 < len(rest) && rest[cr+1] == '\n' {
			return rest[:cr], i + cr + 2
		}
		return rest[:cr], i + cr + 1
	}
	if lf >= 0 {
		return rest[:lf], i + lf + 1
	}
	return rest, len(b)
}

// dataValue returns the value of an SSE "data" field line, and false for any other
// line. One space after the colon is not part of the value.
func dataValue(line []byte) ([]byte, bool) {
	rest, ok := bytes.CutPrefix(line, []byte("data"))
	switch {
	case !ok:
		return nil, false
	case len(rest) == 0:
		return rest, true
	case rest[0] != ':':
		return nil, false
	}
	rest = rest[1:]
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return rest, true
}

type verdict int

const (
	keep verdict = iota
	drop
	rewrite
)

// inspect decides the fate of one dispatch's data, records its usage and keeps the
// text of what is forwarded. With rewrite it also returns the new JSON.
func (m *StreamMeter) inspect(data []byte, lines int) (verdict, []byte) {
	if lines == 0 || firstByte(data) != '{' {
		return keep, nil
	}
	if !mayCarryUsage(data) || !json.Valid(data) {
		// The common delta chunk, or data no client can parse either: forwarded as it
		// is, with the text the scanner can read in it (the client got those bytes).
		m.addChoices(topMember(data, "choices"))
		return keep, nil
	}
	var usageRaw, choicesRaw []byte
	hasUsage := false
	for it := members(data); ; {
		k, v, ok := it.next()
		if !ok {
			break
		}
		switch {
		case keyIs(k, "usage"):
			usageRaw = v
			hasUsage = hasUsage || !isNull(v)
		case keyIs(k, "choices"):
			choicesRaw = v
		}
	}
	if u, ok := parseUsage(usageRaw); ok {
		m.usage, m.hasUsage = u, true
	}
	if m.hideUsage && hasUsage && !nonEmptyArray(choicesRaw) {
		return drop, nil
	}
	m.addChoices(choicesRaw)
	if !m.hideUsage || !hasUsage {
		return keep, nil
	}
	return rewrite, withoutMember(data, "usage")
}

// addChoices keeps the text of a forwarded chunk's choices.
func (m *StreamMeter) addChoices(choices []byte) {
	m.scratch = appendChoices(m.scratch[:0], choices)
	m.addText(m.scratch)
	if m.keepEventText {
		m.eventText = append(m.eventText, m.scratch...)
	}
}

// mayCarryUsage reports whether the JSON object data may have a "usage" member that
// is not null. It is a cheap screen: false is certain, true needs a decode. Without a
// \u escape a member name spells "usage" only as the literal "usage"; a single such
// literal followed by ": null", or by anything but a colon, is no usage.
func mayCarryUsage(data []byte) bool {
	if bytes.Contains(data, []byte(`\u`)) {
		return true
	}
	i := bytes.Index(data, []byte(`"usage"`))
	if i < 0 {
		return false
	}
	rest := data[i+len(`"usage"`):]
	if bytes.Contains(rest, []byte(`"usage"`)) {
		return true
	}
	j := skipSpace(rest, 0)
	if j == len(rest) || rest[j] != ':' {
		return false
	}
	return !bytes.HasPrefix(rest[skipSpace(rest, j+1):], []byte("null"))
}

// nonEmptyArray reports whether raw is an array with at least one element.
func nonEmptyArray(raw []byte) bool {
	raw = trimSpace(raw)
	return len(raw) > 0 && raw[0] == '[' && firstByte(raw[1:]) != ']'
}

// withoutMember returns the JSON object obj without its members named member. The
// other members are copied byte for byte, in order.
func withoutMember(obj []byte, member string) []byte {
	out := make([]byte, 0, len(obj))
	out = append(out, '{')
	for it := members(obj); ; {
		k, v, ok := it.next()
		if !ok {
			break
		}
		if keyIs(k, member) {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, k...)
		out = append(out, ':')
		out = append(out, v...)
	}
	return append(out, '}')
}

// appendRewritten appends to out the dispatch ev with its data lines replaced by one
// "data: " line holding data, where the first data line was, and a blank line.
func appendRewritten(out, ev, data []byte) []byte {
	wrote := false
	for i := 0; i < len(ev); {
		line, next := nextLine(ev, i)
		i = next
		if len(line) == 0 {
			continue
		}
		if _, ok := dataValue(line); ok {
			if !wrote {
				out = append(append(append(out, "data: "...), data...), '\n')
				wrote = true
			}
			continue
		}
		out = append(append(out, line...), '\n')
	}
	return append(out, '\n')
}
