package mockupstream_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// start serves a mock built from o on a loopback port for the duration of the test.
func start(t *testing.T, o mockupstream.Options) (*mockupstream.Server, string) {
	t.Helper()
	m := mockupstream.New(o)
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	return m, srv.URL
}

// call sends a request with a JSON body and returns the response with its body read.
func call(t *testing.T, method, url, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, b
}

// sseEvents reads an SSE body and returns the payload of every "data:" event, and the
// read error that ended it (nil on a clean end).
func sseEvents(r io.Reader) ([]string, error) {
	var events []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, data)
		}
	}
	return events, sc.Err()
}

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

type chatAnswer struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Delta struct {
			Role    string  `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

type openAIError struct {
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

func TestChatCompletion(t *testing.T) {
	_, url := start(t, mockupstream.Options{Name: "eu-1"})
	tests := []struct {
		name       string
		body       string
		wantReply  string
		wantFinish string
		wantUsage  [3]int
	}{
		{
			name:       "one message",
			body:       `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"say hello to me"}]}`,
			wantReply:  "mock reply from eu-1 to 1 messages",
			wantFinish: "stop",
			wantUsage:  [3]int{5, 7, 12},
		},
		{
			name: "parts and system message",
			body: `{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},` +
				`{"role":"user","content":[{"type":"text","text":"one two"},{"type":"text","text":"three"}]}]}`,
			wantReply:  "mock reply from eu-1 to 2 messages",
			wantFinish: "stop",
			wantUsage:  [3]int{7, 7, 14},
		},
		{
			name:       "max_tokens cuts the reply",
			body:       `{"model":"gpt-4o","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`,
			wantReply:  "mock reply from",
			wantFinish: "length",
			wantUsage:  [3]int{2, 3, 5},
		},
		{
			name:       "smallest of max_tokens and max_completion_tokens",
			body:       `{"model":"gpt-4o","max_tokens":5,"max_completion_tokens":2,"messages":[{"role":"user","content":"hi"}]}`,
			wantReply:  "mock reply",
			wantFinish: "length",
			wantUsage:  [3]int{2, 2, 4},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := call(t, http.MethodPost, url+"/v1/chat/completions", tc.body, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			got := decodeJSON[chatAnswer](t, body)
			if got.Object != "chat.completion" || !strings.HasPrefix(got.ID, "chatcmpl-") {
				t.Errorf("object %q id %q", got.Object, got.ID)
			}
			if len(got.Choices) != 1 {
				t.Fatalf("choices: %s", body)
			}
			c := got.Choices[0]
			if c.Message.Role != "assistant" || c.Message.Content != tc.wantReply {
				t.Errorf("message %+v, want assistant %q", c.Message, tc.wantReply)
			}
			if c.FinishReason == nil || *c.FinishReason != tc.wantFinish {
				t.Errorf("finish_reason %v, want %q", c.FinishReason, tc.wantFinish)
			}
			if got.Usage == nil {
				t.Fatal("no usage")
			}
			if u := [3]int{got.Usage.PromptTokens, got.Usage.CompletionTokens, got.Usage.TotalTokens}; u != tc.wantUsage {
				t.Errorf("usage %v, want %v", u, tc.wantUsage)
			}
			_, again := call(t, http.MethodPost, url+"/v1/chat/completions", tc.body, nil)
			if !bytes.Equal(body, again) {
				t.Errorf("not deterministic:\n%s\n%s", body, again)
			}
		})
	}
}

func TestChatCompletionStream(t *testing.T) {
	const reply = "mock reply from us-1 to 1 messages"
	tests := []struct {
		name      string
		options   string
		wantUsage bool
	}{
		{name: "without usage", options: ``, wantUsage: false},
		{name: "include_usage false", options: `,"stream_options":{"include_usage":false}`, wantUsage: false},
		{name: "include_usage true", options: `,"stream_options":{"include_usage":true}`, wantUsage: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, url := start(t, mockupstream.Options{Name: "us-1", ChunkDelay: time.Millisecond})
			body := `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"stream please"}]` + tc.options + `}`
			resp, raw := call(t, http.MethodPost, url+"/v1/chat/completions", body, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, raw)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			events, err := sseEvents(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if len(events) < 4 || events[len(events)-1] != "[DONE]" {
				t.Fatalf("events %q: want several chunks ending in [DONE]", events)
			}
			var content strings.Builder
			var finish string
			var usageChunks int
			for i, ev := range events[:len(events)-1] {
				c := decodeJSON[chatAnswer](t, []byte(ev))
				if c.Object != "chat.completion.chunk" || c.Model != "gpt-4o-mini" {
					t.Errorf("chunk %d: object %q model %q", i, c.Object, c.Model)
				}
				if c.Usage != nil {
					usageChunks++
					if len(c.Choices) != 0 {
						t.Errorf("usage chunk has choices: %s", ev)
					}
					if c.Usage.PromptTokens != 3 || c.Usage.CompletionTokens != 7 || c.Usage.TotalTokens != 10 {
						t.Errorf("usage %+v", *c.Usage)
					}
					if i != len(events)-2 {
						t.Errorf("usage chunk is not the last chunk")
					}
					continue
				}
				if i == 0 && c.Choices[0].Delta.Role != "assistant" {
					t.Errorf("first chunk has no assistant role: %s", ev)
				}
				if d := c.Choices[0].Delta.Content; d != nil {
					content.WriteString(*d)
				}
				if f := c.Choices[0].FinishReason; f != nil {
					finish = *f
				}
			}
			if content.String() != reply {
				t.Errorf("streamed content %q, want %q", content.String(), reply)
			}
			if finish != "stop" {
				t.Errorf("finish_reason %q", finish)
			}
			if want := map[bool]int{true: 1, false: 0}[tc.wantUsage]; usageChunks != want {
				t.Errorf("%d usage chunks, want %d", usageChunks, want)
			}
		})
	}
}

func TestCompletions(t *testing.T) {
	_, url := start(t, mockupstream.Options{Name: "m"})
	t.Run("non-stream, two prompts", func(t *testing.T) {
		resp, body := call(t, http.MethodPost, url+"/v1/completions",
			`{"model":"gpt-3.5-turbo-instruct","prompt":["a b c","d"]}`, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		got := decodeJSON[chatAnswer](t, body)
		if got.Object != "text_completion" || len(got.Choices) != 2 {
			t.Fatalf("answer %s", body)
		}
		for i, want := range []string{"mock completion from m for 3 words", "mock completion from m for 1 words"} {
			if got.Choices[i].Text != want || got.Choices[i].Index != i {
				t.Errorf("choice %d: %q index %d, want %q", i, got.Choices[i].Text, got.Choices[i].Index, want)
			}
		}
		if got.Usage == nil || got.Usage.PromptTokens != 4 || got.Usage.CompletionTokens != 14 || got.Usage.TotalTokens != 18 {
			t.Errorf("usage %+v", got.Usage)
		}
	})
	t.Run("stream with usage", func(t *testing.T) {
		resp, body := call(t, http.MethodPost, url+"/v1/completions",
			`{"model":"x","prompt":"a b","stream":true,"stream_options":{"include_usage":true}}`, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		events, err := sseEvents(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if len(events) < 3 || events[len(events)-1] != "[DONE]" {
			t.Fatalf("events %q", events)
		}
		var text strings.Builder
		var sawUsage bool
		for _, ev := range events[:len(events)-1] {
			c := decodeJSON[chatAnswer](t, []byte(ev))
			if c.Object != "text_completion" {
				t.Errorf("object %q", c.Object)
			}
			if c.Usage != nil {
				sawUsage = c.Usage.PromptTokens == 2 && c.Usage.CompletionTokens == 7
				continue
			}
			text.WriteString(c.Choices[0].Text)
		}
		if text.String() != "mock completion from m for 2 words" {
			t.Errorf("text %q", text.String())
		}
		if !sawUsage {
			t.Error("no usage chunk with prompt 2 / completion 7 tokens")
		}
	})
}

func TestEmbeddings(t *testing.T) {
	_, url := start(t, mockupstream.Options{})
	type answer struct {
		Object string `json:"object"`
		Model  string `json:"model"`
		Data   []struct {
			Object    string          `json:"object"`
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
	tests := []struct {
		name       string
		input      string
		format     string
		wantN      int
		wantTokens int
		wantFirst  []float32 // nil: not checked
	}{
		{name: "string", input: `"hello world"`, wantN: 1, wantTokens: 2, wantFirst: mockupstream.Vector([]byte("hello world"))},
		{name: "array of strings", input: `["hello world","other"]`, wantN: 2, wantTokens: 3, wantFirst: mockupstream.Vector([]byte("hello world"))},
		{name: "token ids", input: `[1,2,3]`, wantN: 1, wantTokens: 3},
		{name: "token id arrays", input: `[[1,2],[3]]`, wantN: 2, wantTokens: 3},
		{name: "base64", input: `"hello world"`, format: "base64", wantN: 1, wantTokens: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := `{"model":"text-embedding-3-small","input":` + tc.input
			if tc.format != "" {
				req += `,"encoding_format":"` + tc.format + `"`
			}
			req += `}`
			resp, body := call(t, http.MethodPost, url+"/v1/embeddings", req, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			got := decodeJSON[answer](t, body)
			if got.Object != "list" || got.Model != "text-embedding-3-small" || len(got.Data) != tc.wantN {
				t.Fatalf("answer %s", body)
			}
			if got.Usage.PromptTokens != tc.wantTokens || got.Usage.TotalTokens != tc.wantTokens {
				t.Errorf("usage %+v, want %d tokens", got.Usage, tc.wantTokens)
			}
			for i, d := range got.Data {
				if d.Object != "embedding" || d.Index != i {
					t.Errorf("data[%d] object %q index %d", i, d.Object, d.Index)
				}
				if tc.format == "base64" {
					var s string
					if err := json.Unmarshal(d.Embedding, &s); err != nil || s == "" {
						t.Errorf("data[%d]: want a base64 string, got %s", i, d.Embedding)
					}
					continue
				}
				vec := decodeJSON[[]float32](t, d.Embedding)
				if len(vec) != mockupstream.EmbeddingDims {
					t.Fatalf("data[%d]: %d dims", i, len(vec))
				}
				var norm float64
				for _, x := range vec {
					norm += float64(x) * float64(x)
				}
				if math.Abs(norm-1) > 1e-4 {
					t.Errorf("data[%d]: squared norm %v, want 1", i, norm)
				}
				if i == 0 && tc.wantFirst != nil && !equalVec(vec, tc.wantFirst) {
					t.Errorf("data[0] = %v, want %v", vec, tc.wantFirst)
				}
			}
			if tc.wantN == 2 && bytes.Equal(got.Data[0].Embedding, got.Data[1].Embedding) {
				t.Error("different inputs got the same vector")
			}
		})
	}
}

func equalVec(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-6 {
			return false
		}
	}
	return true
}

func TestModels(t *testing.T) {
	_, url := start(t, mockupstream.Options{Name: "owner", Models: []string{"a", "b"}})
	resp, body := call(t, http.MethodGet, url+"/v1/models", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := decodeJSON[struct {
		Object string `json:"object"`
		Data   []struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}](t, body)
	if got.Object != "list" || len(got.Data) != 2 || got.Data[0].ID != "a" || got.Data[1].ID != "b" ||
		got.Data[0].Object != "model" || got.Data[0].OwnedBy != "owner" {
		t.Errorf("models %s", body)
	}
}

func TestErrors(t *testing.T) {
	const key = "test-upstream-key"
	_, url := start(t, mockupstream.Options{RequireKey: key})
	good := http.Header{"Authorization": {"Bearer " + key}}
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		header     http.Header
		wantStatus int
		wantType   string
		wantParam  string
		wantCode   string
	}{
		{name: "no key", method: "POST", path: "/v1/chat/completions",
			body:       `{"model":"m","messages":[{"role":"user","content":"x"}]}`,
			wantStatus: 401, wantType: "invalid_request_error", wantCode: "invalid_api_key"},
		{name: "wrong key", method: "POST", path: "/v1/embeddings", body: `{"model":"m","input":"x"}`,
			header:     http.Header{"Authorization": {"Bearer nope"}},
			wantStatus: 401, wantType: "invalid_request_error", wantCode: "invalid_api_key"},
		{name: "key without Bearer", method: "GET", path: "/v1/models",
			header:     http.Header{"Authorization": {key}},
			wantStatus: 401, wantType: "invalid_request_error", wantCode: "invalid_api_key"},
		{name: "bad JSON", method: "POST", path: "/v1/chat/completions", body: `{"model":`, header: good,
			wantStatus: 400, wantType: "invalid_request_error"},
		{name: "missing model", method: "POST", path: "/v1/chat/completions",
			body: `{"messages":[{"role":"user","content":"x"}]}`, header: good,
			wantStatus: 400, wantType: "invalid_request_error", wantParam: "model"},
		{name: "missing messages", method: "POST", path: "/v1/chat/completions", body: `{"model":"m"}`, header: good,
			wantStatus: 400, wantType: "invalid_request_error", wantParam: "messages"},
		{name: "embeddings missing model", method: "POST", path: "/v1/embeddings", body: `{"input":"x"}`, header: good,
			wantStatus: 400, wantType: "invalid_request_error", wantParam: "model"},
		{name: "embeddings bad input", method: "POST", path: "/v1/embeddings", body: `{"model":"m","input":{}}`, header: good,
			wantStatus: 400, wantType: "invalid_request_error", wantParam: "input"},
		{name: "embeddings bad format", method: "POST", path: "/v1/embeddings",
			body: `{"model":"m","input":"x","encoding_format":"int8"}`, header: good,
			wantStatus: 400, wantType: "invalid_request_error", wantParam: "encoding_format"},
		{name: "completions missing prompt", method: "POST", path: "/v1/completions", body: `{"model":"m"}`, header: good,
			wantStatus: 400, wantType: "invalid_request_error", wantParam: "prompt"},
		{name: "unknown path", method: "POST", path: "/v1/nope", body: `{}`, header: good,
			wantStatus: 404, wantType: "invalid_request_error"},
		{name: "wrong method", method: "GET", path: "/v1/chat/completions", header: good,
			wantStatus: 405, wantType: "invalid_request_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := call(t, tc.method, url+tc.path, tc.body, tc.header)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			got := decodeJSON[openAIError](t, body)
			if got.Error == nil || got.Error.Message == "" || got.Error.Type != tc.wantType {
				t.Fatalf("error body %s, want type %q", body, tc.wantType)
			}
			if tc.wantParam != "" && (got.Error.Param == nil || *got.Error.Param != tc.wantParam) {
				t.Errorf("param %v, want %q", got.Error.Param, tc.wantParam)
			}
			if tc.wantCode != "" && (got.Error.Code == nil || *got.Error.Code != tc.wantCode) {
				t.Errorf("code %v, want %q", got.Error.Code, tc.wantCode)
			}
			if strings.Contains(string(body), key) {
				t.Error("error body echoes the key")
			}
		})
	}
	t.Run("right key", func(t *testing.T) {
		resp, body := call(t, http.MethodGet, url+"/v1/models", "", good)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
}

func TestRecordsRequests(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	call(t, http.MethodPost, url+"/v1/chat/completions",
		`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"x"}]}`,
		http.Header{"Authorization": {"Bearer secret-value"}, "X-Request-Id": {"req-1"}})
	call(t, http.MethodPost, url+"/v1/embeddings", `{"model":"emb","input":"x"}`, nil)
	call(t, http.MethodPost, url+"/v1/chat/completions", `not json`, nil)

	got := m.Requests()
	if len(got) != 3 {
		t.Fatalf("%d requests recorded, want 3", len(got))
	}
	want := []mockupstream.Request{
		{Method: "POST", Path: "/v1/chat/completions", Model: "gpt-4o", Stream: true, HadAuth: true},
		{Method: "POST", Path: "/v1/embeddings", Model: "emb"},
		{Method: "POST", Path: "/v1/chat/completions"},
	}
	for i, w := range want {
		g := got[i]
		if g.Method != w.Method || g.Path != w.Path || g.Model != w.Model || g.Stream != w.Stream || g.HadAuth != w.HadAuth {
			t.Errorf("request %d = %+v, want %+v", i, g, w)
		}
		if g.Header.Get("Authorization") != "" {
			t.Errorf("request %d kept the Authorization header", i)
		}
	}
	if got[0].Header.Get("X-Request-Id") != "req-1" {
		t.Errorf("header not recorded: %v", got[0].Header)
	}

	m.Reset()
	if n := len(m.Requests()); n != 0 {
		t.Errorf("%d requests after Reset", n)
	}
}

func TestConcurrentRequests(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	const n = 32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(url+"/v1/chat/completions", "application/json",
				strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			events, err := sseEvents(resp.Body)
			if err == nil && (len(events) == 0 || events[len(events)-1] != "[DONE]") {
				err = errors.New("stream did not end in [DONE]")
			}
			if err != nil {
				errs <- err
			}
		}()
		wg.Add(1)
		go func() { // reading while recording must be race-free
			defer wg.Done()
			_ = m.Requests()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(m.Requests()); got != n {
		t.Errorf("%d requests recorded, want %d", got, n)
	}
}

func TestRecordsStreamOptionsAndMaxTokens(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	intp := func(n int) *int { return &n }
	tests := []struct {
		name        string
		path        string
		members     string // added to the body
		wantOptions string // "" means none recorded
		wantMax     *int
		wantStatus  int // 0 means 200
	}{
		{name: "neither", path: "/v1/chat/completions"},
		{name: "stream_options as sent", path: "/v1/chat/completions",
			members: `,"stream":true,"stream_options":{ "include_usage": true, "x": [1] }`, wantOptions: `{ "include_usage": true, "x": [1] }`},
		{name: "null stream_options", path: "/v1/chat/completions", members: `,"stream_options":null`, wantOptions: `null`},
		{name: "max_tokens", path: "/v1/chat/completions", members: `,"max_tokens":5`, wantMax: intp(5)},
		{name: "max_completion_tokens", path: "/v1/chat/completions", members: `,"max_completion_tokens":7`, wantMax: intp(7)},
		{name: "both: the smaller", path: "/v1/chat/completions", members: `,"max_tokens":9,"max_completion_tokens":4`, wantMax: intp(4)},
		{name: "both: max_tokens smaller", path: "/v1/chat/completions", members: `,"max_tokens":2,"max_completion_tokens":4`, wantMax: intp(2)},
		{name: "null max_tokens", path: "/v1/chat/completions", members: `,"max_tokens":null`},
		{name: "not an integer", path: "/v1/chat/completions", members: `,"max_tokens":"5"`, wantStatus: http.StatusBadRequest},
		{name: "completions", path: "/v1/completions",
			members:     `,"prompt":"x","stream":true,"stream_options":{"include_usage":false},"max_tokens":3`,
			wantOptions: `{"include_usage":false}`, wantMax: intp(3)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m.Reset()
			body := `{"model":"m","messages":[{"role":"user","content":"x"}]` + tc.members + `}`
			if resp, b := call(t, http.MethodPost, url+tc.path, body, nil); resp.StatusCode != cmp.Or(tc.wantStatus, http.StatusOK) {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			reqs := m.Requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests recorded, want 1", len(reqs))
			}
			if got := string(reqs[0].StreamOptions); got != tc.wantOptions {
				t.Errorf("StreamOptions %q, want %q", got, tc.wantOptions)
			}
			switch got := reqs[0].MaxTokens; {
			case tc.wantMax == nil && got != nil:
				t.Errorf("MaxTokens %d, want nil", *got)
			case tc.wantMax != nil && (got == nil || *got != *tc.wantMax):
				t.Errorf("MaxTokens %v, want %d", got, *tc.wantMax)
			}
		})
	}
}

func TestInFlight(t *testing.T) {
	m, url := start(t, mockupstream.Options{HoldDelay: time.Hour})
	if m.InFlight() != 0 || m.MaxInFlight() != 0 {
		t.Fatalf("new server: InFlight %d, MaxInFlight %d", m.InFlight(), m.MaxInFlight())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	endpoints := []struct{ method, path string }{
		{http.MethodPost, "/v1/chat/completions"},
		{http.MethodPost, "/v1/embeddings"},
		{http.MethodGet, "/v1/models"},
		{http.MethodPost, "/v1/nope"},
	}
	errs := make(chan error, len(endpoints))
	for _, e := range endpoints {
		go func() {
			req, err := http.NewRequestWithContext(ctx, e.method, url+e.path, strings.NewReader(chatBody))
			if err == nil {
				var resp *http.Response
				if resp, err = freshClient().Do(req); err == nil {
					resp.Body.Close()
				}
			}
			errs <- err
		}()
	}
	n := len(endpoints)
	waitfor.That(t, "the mock's state", func() bool { return m.InFlight() == n })
	if got := m.MaxInFlight(); got != n {
		t.Errorf("MaxInFlight %d with %d held, want %d", got, n, n)
	}
	m.Reset()
	if got := m.MaxInFlight(); got != n {
		t.Errorf("MaxInFlight %d after a Reset with %d in flight, want %d", got, n, n)
	}
	cancel()
	for range n {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("held request ended with %v, want context.Canceled", err)
		}
	}
	waitfor.That(t, "the mock's state", func() bool { return m.InFlight() == 0 })
	if got := m.MaxInFlight(); got != n {
		t.Errorf("MaxInFlight %d once idle, want %d", got, n)
	}
	m.Reset()
	if got := m.MaxInFlight(); got != 0 {
		t.Errorf("MaxInFlight %d after Reset, want 0", got)
	}
}

func TestInFlightCountsEveryOutcome(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	for _, f := range []mockupstream.Failure{mockupstream.FailNone, mockupstream.Fail500, mockupstream.FailReset, mockupstream.FailCutStream} {
		m.SetFailure(f)
		if resp, err := post(context.Background(), url+"/v1/chat/completions", streamBody); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		// A dropped connection can reach the client before the handler returns.
		waitfor.That(t, "the mock's state", func() bool { return m.InFlight() == 0 })
	}
	if got := m.MaxInFlight(); got != 1 {
		t.Errorf("MaxInFlight %d after requests one at a time, want 1", got)
	}
}

func TestHoldDelay(t *testing.T) {
	t.Run("answers after the delay", func(t *testing.T) {
		const delay = 100 * time.Millisecond
		_, url := start(t, mockupstream.Options{HoldDelay: delay})
		for _, e := range []struct{ method, path, body string }{
			{http.MethodPost, "/v1/chat/completions", chatBody},
			{http.MethodPost, "/v1/embeddings", `{"model":"m","input":"x"}`},
			{http.MethodGet, "/v1/models", ""},
		} {
			began := time.Now()
			resp, body := call(t, e.method, url+e.path, e.body, nil)
			if took := time.Since(began); took < delay {
				t.Errorf("%s answered after %v, want at least %v", e.path, took, delay)
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: status %d: %s", e.path, resp.StatusCode, body)
			}
		}
	})
	t.Run("gives up when the client does", func(t *testing.T) {
		// With an hour's delay, the server's Close in t.Cleanup would hang unless the
		// handler returns when the client's context ends.
		m, url := start(t, mockupstream.Options{HoldDelay: time.Hour})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			resp, err := post(ctx, url+"/v1/chat/completions", chatBody)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		waitfor.That(t, "the mock's state", func() bool { return len(m.Requests()) == 1 })
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		waitfor.That(t, "the mock's state", func() bool { return m.InFlight() == 0 })
	})
}

func TestNoUsage(t *testing.T) {
	_, url := start(t, mockupstream.Options{NoUsage: true})
	tests := []struct {
		name     string
		path     string
		body     string
		wantText string // in the answer, to show it is otherwise whole
	}{
		{name: "chat", path: "/v1/chat/completions", body: chatBody, wantText: "mock reply from mock to 1 messages"},
		{name: "chat stream", path: "/v1/chat/completions", body: streamBody, wantText: `"finish_reason":"stop"`},
		{name: "completions", path: "/v1/completions", body: `{"model":"m","prompt":"a b"}`, wantText: "mock completion from mock for 2 words"},
		{name: "completions stream", path: "/v1/completions",
			body: `{"model":"m","prompt":"a b","stream":true,"stream_options":{"include_usage":true}}`, wantText: `"finish_reason":"stop"`},
		{name: "embeddings", path: "/v1/embeddings", body: `{"model":"m","input":["a","b"]}`, wantText: `"embedding"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := call(t, http.MethodPost, url+tc.path, tc.body, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if !strings.Contains(string(body), tc.wantText) {
				t.Errorf("answer %s lacks %s", body, tc.wantText)
			}
			objects := [][]byte{body}
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				events, err := sseEvents(bytes.NewReader(body))
				if err != nil || len(events) == 0 || events[len(events)-1] != "[DONE]" {
					t.Fatalf("events %q, %v: want a stream ending in [DONE]", events, err)
				}
				objects = objects[:0]
				for _, ev := range events[:len(events)-1] {
					objects = append(objects, []byte(ev))
				}
			}
			for _, o := range objects {
				if _, ok := decodeJSON[map[string]json.RawMessage](t, o)["usage"]; ok {
					t.Errorf("reported usage: %s", o)
				}
			}
		})
	}
}
