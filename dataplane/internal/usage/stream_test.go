package usage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
)

// Chunks as OpenAI streams them with stream_options.include_usage: every chunk has
// "usage":null but the last, which has the usage and no choices.
const (
	roleChunk  = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}` + "\n\n"
	deltaChunk = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}],"usage":null}` + "\n\n"
	stopChunk  = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}` + "\n\n"
	usageChunk = `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}` + "\n\n"
	doneEvent  = "data: [DONE]\n\n"
)

func chatDelta(content string) string {
	b, _ := json.Marshal(content)
	return `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":` + string(b) + `}}]}` + "\n\n"
}

// same reports whether a and b are the same bytes in memory, not a copy.
func same(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

func TestStreamMeterObserve(t *testing.T) {
	type want struct {
		out   string // what is forwarded; "" with drop
		drop  bool
		same  bool // the event itself is returned, not a copy
		usage *Usage
		text  string // completion text kept
	}
	u := &Usage{9, 2, 11}
	tests := []struct {
		name string
		hide bool
		ev   string
		want want
	}{
		{name: "delta", ev: deltaChunk, want: want{out: deltaChunk, same: true, text: "Hello"}},
		{name: "delta, hiding", hide: true, ev: deltaChunk, want: want{out: deltaChunk, same: true, text: "Hello"}},
		{name: "delta without usage member", hide: true, ev: chatDelta("Hi there"), want: want{out: chatDelta("Hi there"), same: true, text: "Hi there"}},
		{name: "unicode delta", hide: true, ev: chatDelta("日本語 👍🏽 café"), want: want{out: chatDelta("日本語 👍🏽 café"), same: true, text: "日本語 👍🏽 café"}},
		{name: "escaped delta", hide: true, ev: `data: {"choices":[{"delta":{"content":"a\"b\n\u00e9"}}]}` + "\n\n",
			want: want{out: `data: {"choices":[{"delta":{"content":"a\"b\n\u00e9"}}]}` + "\n\n", same: true, text: "a\"b\né"}},
		{name: "the word usage in content", hide: true, ev: chatDelta(`"usage"`), want: want{out: chatDelta(`"usage"`), same: true, text: `"usage"`}},
		{name: "usage chunk forwarded", ev: usageChunk, want: want{out: usageChunk, same: true, usage: u}},
		{name: "usage chunk dropped", hide: true, ev: usageChunk, want: want{drop: true, usage: u}},
		{name: "usage chunk without choices dropped", hide: true, ev: `data: {"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}` + "\n\n",
			want: want{drop: true, usage: &Usage{1, 1, 2}}},
		{name: "usage chunk with null choices dropped", hide: true, ev: `data: {"choices":null,"usage":{"prompt_tokens":1}}` + "\n\n",
			want: want{drop: true, usage: &Usage{1, 0, 1}}},
		{name: "usage with choices rewritten", hide: true,
			ev:   `data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Bye"}}], "usage" : {"prompt_tokens":9,"completion_tokens":2,"total_tokens":11},"model":"m"}` + "\n\n",
			want: want{out: `data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Bye"}}],"model":"m"}` + "\n\n", usage: u, text: "Bye"}},
		{name: "usage with choices forwarded", ev: `data: {"choices":[{"delta":{"content":"Bye"}}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}` + "\n\n",
			want: want{out: `data: {"choices":[{"delta":{"content":"Bye"}}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}` + "\n\n", same: true, usage: u, text: "Bye"}},
		{name: "rewrite keeps other lines", hide: true,
			ev:   "event: chunk\r\nid: 7\r\ndata: {\"choices\":[{\"text\":\"x\"}],\r\ndata: \"usage\":{\"prompt_tokens\":1}}\r\n: note\r\n\r\n",
			want: want{out: "event: chunk\nid: 7\ndata: {\"choices\":[{\"text\":\"x\"}]}\n: note\n\n", usage: &Usage{1, 0, 1}, text: "x"}},
		{name: "escaped usage name dropped", hide: true, ev: `data: {"choices":[],"\u0075sage":{"prompt_tokens":4}}` + "\n\n",
			want: want{drop: true, usage: &Usage{4, 0, 4}}},
		{name: "duplicate usage members all removed", hide: true,
			ev:   `data: {"usage":{"prompt_tokens":4},"choices":[{"text":"a"}],"usage":null}` + "\n\n",
			want: want{out: `data: {"choices":[{"text":"a"}]}` + "\n\n", text: "a"}},
		{name: "usage of another type dropped", hide: true, ev: `data: {"choices":[],"usage":5}` + "\n\n", want: want{drop: true}},
		{name: "different case is not usage", hide: true, ev: `data: {"choices":[],"Usage":{"prompt_tokens":4}}` + "\n\n",
			want: want{out: `data: {"choices":[],"Usage":{"prompt_tokens":4}}` + "\n\n", same: true}},
		{name: "nested usage is not the chunk's", hide: true, ev: `data: {"choices":[{"text":"a","usage":{"prompt_tokens":4}}]}` + "\n\n",
			want: want{out: `data: {"choices":[{"text":"a","usage":{"prompt_tokens":4}}]}` + "\n\n", same: true, text: "a"}},
		{name: "completion chunk", hide: true, ev: `data: {"object":"text_completion","choices":[{"text":" two","index":0}]}` + "\n\n",
			want: want{out: `data: {"object":"text_completion","choices":[{"text":" two","index":0}]}` + "\n\n", same: true, text: " two"}},
		{name: "tool call deltas", hide: true,
			ev: `data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"get_weather","arguments":"{\"ci"}}]}}]}` + "\n\n",
			want: want{out: `data: {"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"get_weather","arguments":"{\"ci"}}]}}]}` + "\n\n",
				same: true, text: `get_weather{"ci`}},
		{name: "done", hide: true, ev: doneEvent, want: want{out: doneEvent, same: true}},
		{name: "comment", hide: true, ev: ": keep-alive\n\n", want: want{out: ": keep-alive\n\n", same: true}},
		{name: "blank line", hide: true, ev: "\n", want: want{out: "\n", same: true}},
		{name: "no data", hide: true, ev: "event: ping\nid: 3\n\n", want: want{out: "event: ping\nid: 3\n\n", same: true}},
		{name: "not JSON", hide: true, ev: "data: {\"usage\":{\"prompt_tokens\":1}\n\n", want: want{out: "data: {\"usage\":{\"prompt_tokens\":1}\n\n", same: true}},
		{name: "trailing garbage is not JSON", hide: true, ev: `data: {"choices":[],"usage":{"prompt_tokens":1}} x` + "\n\n",
			want: want{out: `data: {"choices":[],"usage":{"prompt_tokens":1}} x` + "\n\n", same: true}},
		{name: "array data", hide: true, ev: `data: [{"usage":{"prompt_tokens":1}}]` + "\n\n", want: want{out: `data: [{"usage":{"prompt_tokens":1}}]` + "\n\n", same: true}},
		{name: "empty", hide: true, ev: "", want: want{out: "", same: true}},
		{name: "two events, one dropped", hide: true, ev: deltaChunk + usageChunk, want: want{out: deltaChunk, usage: u, text: "Hello"}},
		{name: "two events, both kept", hide: true, ev: deltaChunk + stopChunk, want: want{out: deltaChunk + stopChunk, same: true, text: "Hello"}},
		{name: "lone CR line endings", hide: true, ev: "data: {\"choices\":[],\rdata: \"usage\":{\"prompt_tokens\":2}}\r\r",
			want: want{drop: true, usage: &Usage{2, 0, 2}}},
		{name: "data without space", hide: true, ev: `data:{"choices":[{"text":"a"}]}` + "\n\n", want: want{out: `data:{"choices":[{"text":"a"}]}` + "\n\n", same: true, text: "a"}},
		{name: "no blank line at the end", hide: true, ev: `data: {"choices":[],"usage":{"prompt_tokens":2}}`, want: want{drop: true, usage: &Usage{2, 0, 2}}},
		{name: "wrong types", hide: true, ev: `data: {"choices":[{"delta":{"content":7,"tool_calls":{}}},{"text":"ok"}],"usage":null}` + "\n\n",
			want: want{out: `data: {"choices":[{"delta":{"content":7,"tool_calls":{}}},{"text":"ok"}],"usage":null}` + "\n\n", same: true, text: "ok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewStreamMeter(tc.hide)
			ev := []byte(tc.ev)
			out := m.Observe(ev)
			switch {
			case tc.want.drop:
				if out != nil {
					t.Fatalf("forwarded %q, want it dropped", out)
				}
			case out == nil && len(ev) > 0:
				t.Fatalf("dropped, want %q", tc.want.out)
			case string(out) != tc.want.out:
				t.Fatalf("forwarded\n%q, want\n%q", out, tc.want.out)
			case tc.want.same != same(out, ev):
				t.Errorf("returned the event itself: %v, want %v", same(out, ev), tc.want.same)
			}
			gotU, ok := m.Usage()
			switch {
			case tc.want.usage == nil && ok:
				t.Errorf("usage %+v, want none", gotU)
			case tc.want.usage != nil && (!ok || gotU != *tc.want.usage):
				t.Errorf("usage %+v, %v; want %+v", gotU, ok, *tc.want.usage)
			}
			if string(m.text) != tc.want.text {
				t.Errorf("text %q, want %q", m.text, tc.want.text)
			}
			if got, want := m.CompletionTokens(), CountText(tc.want.text); got != want {
				t.Errorf("CompletionTokens = %d, want %d", got, want)
			}
		})
	}
}

// relay passes stream through a meter event by event, as the data plane does, and
// returns what the client receives and the read error that ended the stream.
func relay(t *testing.T, m *StreamMeter, stream string) (string, error) {
	t.Helper()
	er := upstream.NewEventReader(strings.NewReader(stream), upstream.MaxEventBytes)
	defer er.Release()
	var client strings.Builder
	for {
		ev, err := er.Next()
		if err != nil {
			return client.String(), err
		}
		client.Write(m.Observe(ev))
	}
}

func TestStreamMeterStreams(t *testing.T) {
	words := []string{"The", " quick", " brown", " fox", " — ", "日本語", " 👍🏽", "."}
	var deltas strings.Builder
	for _, w := range words {
		deltas.WriteString(chatDelta(w))
	}
	whole := strings.Join(words, "")
	withUsage := roleChunk + deltas.String() + stopChunk + usageChunk + doneEvent
	tests := []struct {
		name       string
		hide       bool
		stream     string
		wantClient string
		wantUsage  bool
		wantErr    error
		wantText   string
	}{
		{name: "client asked for usage", stream: withUsage, wantClient: withUsage, wantUsage: true, wantErr: io.EOF, wantText: whole},
		{name: "usage hidden", hide: true, stream: withUsage,
			wantClient: roleChunk + deltas.String() + stopChunk + doneEvent, wantUsage: true, wantErr: io.EOF, wantText: whole},
		{name: "upstream reports nothing", hide: true, stream: deltas.String() + doneEvent,
			wantClient: deltas.String() + doneEvent, wantErr: io.EOF, wantText: whole},
		{name: "cut midway", hide: true, stream: roleChunk + chatDelta("The") + chatDelta(" quick") + `data: {"choices":[{"delta":{"content":" bro`,
			wantClient: roleChunk + chatDelta("The") + chatDelta(" quick"), wantErr: io.ErrUnexpectedEOF, wantText: "The quick"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewStreamMeter(tc.hide)
			client, err := relay(t, m, tc.stream)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("stream ended with %v, want %v", err, tc.wantErr)
			}
			if client != tc.wantClient {
				t.Errorf("client got\n%s\nwant\n%s", client, tc.wantClient)
			}
			if u, ok := m.Usage(); ok != tc.wantUsage || ok && u != (Usage{9, 2, 11}) {
				t.Errorf("usage %+v, %v; want reported: %v", u, ok, tc.wantUsage)
			}
			if got, want := m.CompletionTokens(), CountText(tc.wantText); got != want {
				t.Errorf("CompletionTokens = %d, want CountText(%q) = %d", got, tc.wantText, want)
			}
		})
	}
}

func TestStreamMeterTextLimit(t *testing.T) {
	m := NewStreamMeter(true)
	m.textLimit = 10
	for _, w := range []string{"hello", " wor", "ld and", " more"} {
		m.Observe([]byte(chatDelta(w)))
	}
	if string(m.text) != "hello worl" {
		t.Errorf("kept %q, want the first 10 bytes", m.text)
	}
	if want := CountText("hello worl") + int64(len("d and more")); m.CompletionTokens() != want {
		t.Errorf("CompletionTokens = %d, want %d (tokens of the kept text + excess bytes)", m.CompletionTokens(), want)
	}
}

func TestMayCarryUsage(t *testing.T) {
	tests := []struct {
		data string
		want bool
	}{
		{`{"choices":[]}`, false},
		{`{"choices":[],"usage":null}`, false},
		{`{"choices":[],"usage" :  null}`, false},
		{`{"content":"usage"}`, false},
		{`{"usage":{"prompt_tokens":1}}`, true},
		{`{"usage":null,"usage":{}}`, true},
		{`{"\u0075sage":{}}`, true},
		{`{"usage":5}`, true},
	}
	for _, tc := range tests {
		t.Run(tc.data, func(t *testing.T) {
			if got := mayCarryUsage([]byte(tc.data)); got != tc.want {
				t.Errorf("mayCarryUsage = %v, want %v", got, tc.want)
			}
		})
	}
}

// sseData returns the data of each dispatch of b, as a client's SSE parser sees it.
// It is written independently of the meter's parser, from the specification.
func sseData(b []byte) []string {
	var out []string
	var data []string
	hasData := false
	s := string(b)
	for s != "" {
		i := strings.IndexAny(s, "\r\n")
		line := s
		if i < 0 {
			s = ""
		} else {
			line = s[:i]
			if strings.HasPrefix(s[i:], "\r\n") {
				s = s[i+2:]
			} else {
				s = s[i+1:]
			}
		}
		if line == "" {
			if hasData {
				out = append(out, strings.Join(data, "\n"))
			}
			data, hasData = nil, false
			continue
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		if field == "data" {
			data, hasData = append(data, value), true
		}
	}
	if hasData { // an unfinished dispatch: checked too, to be strict
		out = append(out, strings.Join(data, "\n"))
	}
	return out
}

func FuzzStreamMeterObserve(f *testing.F) {
	for _, s := range []string{roleChunk, deltaChunk, usageChunk, doneEvent, deltaChunk + usageChunk, ": ping\n\n"} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, ev []byte, hide bool) {
		in := bytes.Clone(ev)
		m := NewStreamMeter(hide)
		out := m.Observe(ev)
		if !bytes.Equal(ev, in) {
			t.Fatalf("Observe modified its input")
		}
		if !hide && !bytes.Equal(out, ev) {
			t.Fatalf("without hiding, forwarded %q for %q", out, ev)
		}
		if hide {
			for _, data := range sseData(out) {
				var obj map[string]json.RawMessage
				if json.Unmarshal([]byte(data), &obj) != nil {
					continue
				}
				if u, ok := obj["usage"]; ok && firstByte(u) == '{' {
					t.Fatalf("forwarded a usage object: %q (from %q)", out, ev)
				}
			}
		}
		if u, ok := m.Usage(); ok && (u.PromptTokens < 0 || u.CompletionTokens < 0 || u.TotalTokens < 0) {
			t.Fatalf("negative usage %+v", u)
		}
		if n := m.CompletionTokens(); n < 0 {
			t.Fatalf("CompletionTokens = %d", n)
		}
	})
}

func ExampleStreamMeter() {
	m := NewStreamMeter(true) // the client did not ask for usage
	for _, ev := range []string{
		`data: {"choices":[{"delta":{"content":"Hello"}}],"usage":null}` + "\n\n",
		`data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}` + "\n\n",
		"data: [DONE]\n\n",
	} {
		if out := m.Observe([]byte(ev)); out != nil {
			fmt.Printf("forward %q\n", out)
		} else {
			fmt.Println("drop")
		}
	}
	u, _ := m.Usage()
	fmt.Println("reported:", u.PromptTokens, u.CompletionTokens, "counted:", m.CompletionTokens())
	// Output:
	// forward "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}],\"usage\":null}\n\n"
	// drop
	// forward "data: [DONE]\n\n"
	// reported: 9 1 counted: 1
}
