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
