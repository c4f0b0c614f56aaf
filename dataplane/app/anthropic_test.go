package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// anthropicSpy makes the eu spy answer like Anthropic's Messages API.
func anthropicSpy(e *env, answer func(w http.ResponseWriter, r *http.Request)) {
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/messages" || r.Header.Get("Anthropic-Version") == "" || r.Header.Get("X-Api-Key") != upstreamKey {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"type":"error","error":{"type":"authentication_error","message":"bad request shape"}}`)
			return
		}
		answer(w, r)
	})
}

func TestChatTranslatedToAnthropic(t *testing.T) {
	e := newEnv(t, envOptions{})
	token := e.token(t, "premium-app")
	chat := `{"model":"claude-3-5-sonnet","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}]}`

	t.Run("plain", func(t *testing.T) {
		anthropicSpy(e, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022",
				"content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","usage":{"input_tokens":9,"output_tokens":2}}`)
		})
		resp := e.do(t, http.MethodPost, "/v1/chat/completions", token, chat, nil)
		raw, _ := io.ReadAll(resp.Body)
		var out struct {
			Object  string
			Model   string
			Choices []struct {
				Message      struct{ Content string }
				FinishReason string `json:"finish_reason"`
			}
			Usage struct {
				TotalTokens int `json:"total_tokens"`
			}
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &out) != nil {
			t.Fatalf("status %d: %s", resp.StatusCode, raw)
		}
		if out.Object != "chat.completion" || out.Model != "claude-3-5-sonnet" || len(out.Choices) != 1 ||
			out.Choices[0].Message.Content != "Hello!" || out.Choices[0].FinishReason != "stop" || out.Usage.TotalTokens != 11 {
			t.Fatalf("translated answer %s", raw)
		}
		seen := e.spies["eu"].seen()
		sent := seen[len(seen)-1].Body
		if sent["model"] != "claude-3-5-sonnet-20241022" || sent["system"] != "be brief" || sent["max_tokens"] == nil {
			t.Fatalf("upstream got %v", sent)
		}
	})

	t.Run("stream", func(t *testing.T) {
		anthropicSpy(e, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for _, ev := range []string{
				`event: message_start` + "\n" + `data: {"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":[],"usage":{"input_tokens":9,"output_tokens":1}}}`,
				`event: content_block_start` + "\n" + `data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`,
				`event: content_block_delta` + "\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}`,
				`event: content_block_delta` + "\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"lo"}}`,
				`event: content_block_stop` + "\n" + `data: {"type":"content_block_stop","index":0}`,
				`event: message_delta` + "\n" + `data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}`,
				`event: message_stop` + "\n" + `data: {"type":"message_stop"}`,
			} {
				_, _ = io.WriteString(w, ev+"\n\n")
				w.(http.Flusher).Flush()
			}
		})
		body := strings.Replace(chat, `"messages"`, `"stream":true,"stream_options":{"include_usage":true},"messages"`, 1)
		resp := e.do(t, http.MethodPost, "/v1/chat/completions", token, body, nil)
		raw, _ := io.ReadAll(resp.Body)
		text := string(raw)
		if resp.StatusCode != http.StatusOK || !strings.HasSuffix(text, "data: [DONE]\n\n") ||
			!strings.Contains(text, `"Hel"`) || !strings.Contains(text, `"finish_reason":"stop"`) || !strings.Contains(text, `"total_tokens":11`) {
			t.Fatalf("status %d: %s", resp.StatusCode, text)
		}
	})

	t.Run("upstream client error in OpenAI's schema", func(t *testing.T) {
		anthropicSpy(e, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"type":"error","error":{"type":"invalid_request_error","message":"messages: text content blocks must be non-empty"}}`)
		})
		got := openAIError(t, e.do(t, http.MethodPost, "/v1/chat/completions", token, chat, nil), http.StatusBadRequest, apierr.InvalidRequest)
		if !strings.Contains(got.Message, "non-empty") {
			t.Fatalf("message %q", got.Message)
		}
	})

	t.Run("a request Anthropic cannot express is a 400", func(t *testing.T) {
		bad := strings.Replace(chat, `"messages"`, `"n":3,"messages"`, 1)
		got := openAIError(t, e.do(t, http.MethodPost, "/v1/chat/completions", token, bad, nil), http.StatusBadRequest, apierr.InvalidRequest)
		if got.Param == nil || *got.Param != "n" {
			t.Fatalf("param %v, want n", got.Param)
		}
	})
}

func TestNativeMessagesAPI(t *testing.T) {
	e := newEnv(t, envOptions{})
	token := e.token(t, "premium-app")
	body := `{"model":"claude-3-5-sonnet","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`
	anthropicError := func(t *testing.T, resp *http.Response, status int, typ string) string {
		t.Helper()
		raw, _ := io.ReadAll(resp.Body)
		var out struct {
			Type  string
			Error struct{ Type, Message string }
		}
		if resp.StatusCode != status || json.Unmarshal(raw, &out) != nil || out.Type != "error" || out.Error.Type != typ {
			t.Fatalf("status %d body %s, want %d with an Anthropic %s", resp.StatusCode, raw, status, typ)
		}
		return out.Error.Message
	}

	t.Run("x-api-key carries the token; the answer passes through", func(t *testing.T) {
		answer := `{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":1}}`
		anthropicSpy(e, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, answer)
		})
		resp := e.do(t, http.MethodPost, "/v1/messages", "", body, map[string]string{"X-Api-Key": token, "Anthropic-Version": "2023-06-01"})
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(raw) != answer {
			t.Fatalf("status %d: %s", resp.StatusCode, raw)
		}
		seen := e.spies["eu"].seen()
		if sent := seen[len(seen)-1].Body; sent["model"] != "claude-3-5-sonnet-20241022" || sent["stream_options"] != nil {
			t.Fatalf("upstream got %v", sent)
		}
	})
	t.Run("a stream cut short ends with an Anthropic error event", func(t *testing.T) {
		anthropicSpy(e, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n")
		})
		stream := strings.Replace(body, `"messages"`, `"stream":true,"messages"`, 1)
		before := len(e.spies["eu"].seen())
		resp := e.do(t, http.MethodPost, "/v1/messages", token, stream, nil)
		raw, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(raw), "event: message_start") || !strings.HasSuffix(string(raw), "\n\n") ||
			!strings.Contains(string(raw), "event: error\ndata: {\"type\":\"error\"") {
			t.Fatalf("stream %q", raw)
		}
		if n := len(e.spies["eu"].seen()) - before; n != 1 {
			t.Fatalf("the upstream saw %d attempts; a stream that reached the client is never retried", n)
		}
	})
	t.Run("both credentials at once are refused", func(t *testing.T) {
		resp := e.do(t, http.MethodPost, "/v1/messages", token, body, map[string]string{"X-Api-Key": token})
		anthropicError(t, resp, http.StatusBadRequest, "invalid_request_error")
	})
	t.Run("a bad token gets Anthropic's 401", func(t *testing.T) {
		resp := e.do(t, http.MethodPost, "/v1/messages", "", body, map[string]string{"X-Api-Key": "not-a-jwt"})
		anthropicError(t, resp, http.StatusUnauthorized, "authentication_error")
	})
	t.Run("operations: messages is its own, and completion covers it", func(t *testing.T) {
		anthropicSpy(e, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id":"msg_2","type":"message","role":"assistant","content":[],"usage":{"input_tokens":3,"output_tokens":0}}`)
		})
		if resp := e.do(t, http.MethodPost, "/v1/messages", e.token(t, "messages-app"), body, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("a tier listing messages: status %d", resp.StatusCode)
		}
		resp := e.do(t, http.MethodPost, "/v1/messages", e.token(t, "chat-only-app"), body, nil)
		if msg := anthropicError(t, resp, http.StatusForbidden, "permission_error"); !strings.Contains(msg, "messages") {
			t.Fatalf("a chat-only tier: message %q does not name the operation", msg)
		}
	})
	t.Run("an OpenAI model is not served here", func(t *testing.T) {
		resp := e.do(t, http.MethodPost, "/v1/messages", token, strings.Replace(body, "claude-3-5-sonnet", "gpt-4o", 1), nil)
		if msg := anthropicError(t, resp, http.StatusBadRequest, "invalid_request_error"); !strings.Contains(msg, "/v1/chat/completions") {
			t.Fatalf("message %q", msg)
		}
	})
}
