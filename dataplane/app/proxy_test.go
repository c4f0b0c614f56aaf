package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// metrics returns the data plane's /metrics text, from its metrics listener.
func (e *env) metrics(t *testing.T) string {
	t.Helper()
	status, body := e.getMetricsListener(t, "/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics on the metrics listener: %d", status)
	}
	return body
}

func TestProxiesEachOperation(t *testing.T) {
	e := newEnv(t, envOptions{region: "eu"})
	token := e.token(t, "premium-app")
	tests := []struct {
		name         string
		path         string
		body         string
		wantUpstream string
		wantObject   string
	}{
		{name: "chat", path: "/v1/chat/completions",
			body:         `{"model":"gpt-4o","messages":[{"role":"user","content":"<b>hi</b>"}],"temperature":0.1,"x_vendor_field":{"keep":[1,2]}}`,
			wantUpstream: "gpt-4o-2024-08-06", wantObject: "chat.completion"},
		{name: "completion", path: "/v1/completions", body: `{"model":"gpt-4o-mini","prompt":"hi"}`,
			wantUpstream: "gpt-4o-mini-2024-07-18", wantObject: "text_completion"},
		{name: "embeddings", path: "/v1/embeddings", body: `{"model":"text-embedding-3-small","input":["a","b"]}`,
			wantUpstream: "text-embedding-3-small", wantObject: "list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.spies["eu"].seen())
			resp := e.do(t, http.MethodPost, tt.path, token, tt.body, map[string]string{"X-Request-Id": "client-" + tt.name})
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d: %s", resp.StatusCode, raw)
			}
			var out map[string]any
			if err := json.Unmarshal(raw, &out); err != nil || out["object"] != tt.wantObject {
				t.Fatalf("body %s: object %v, want %s", raw, out["object"], tt.wantObject)
			}
			for header, want := range map[string]string{
				"X-Client-Request-Id": "client-" + tt.name, "X-Portcullis-Region": "eu", "X-Portcullis-Deployment": "openai-eu",
			} {
				if got := resp.Header.Get(header); got != want {
					t.Errorf("%s = %q, want %q", header, got, want)
				}
			}
			seen := e.spies["eu"].seen()
			if len(seen) != before+1 {
				t.Fatalf("eu upstream saw %d new requests, want 1", len(seen)-before)
			}
			got := seen[len(seen)-1]
			if got.Path != tt.path || got.Body["model"] != tt.wantUpstream {
				t.Fatalf("upstream saw %s model %v, want %s %s", got.Path, got.Body["model"], tt.path, tt.wantUpstream)
			}
			if got.Authorization != "Bearer "+upstreamKey {
				t.Fatalf("upstream Authorization = %q, want the deployment's key (never the client's token)", got.Authorization)
			}
			if id := resp.Header.Get("X-Request-Id"); got.RequestID != id || id == "client-"+tt.name {
				t.Fatalf("upstream X-Request-Id = %q, want the gateway's own %q", got.RequestID, id)
			}
			var sent map[string]any
			_ = json.Unmarshal([]byte(tt.body), &sent)
			for k, v := range sent {
				if k == "model" {
					continue
				}
				if a, b := mustJSON(t, got.Body[k]), mustJSON(t, v); a != b {
					t.Errorf("field %s reached the upstream as %s, want %s", k, a, b)
				}
			}
		})
	}
	line := accessLine(t, e.logs, "client-chat")
	for k, want := range map[string]any{"method": "POST", "route": "/v1/chat/completions", "status": float64(200),
		"client_id": "premium-app", "model": "gpt-4o", "deployment": "openai-eu"} {
		if line[k] != want {
			t.Errorf("access log %s = %v, want %v", k, line[k], want)
		}
	}
	if _, ok := line["latency_ms"].(float64); !ok {
		t.Error("access log has no latency_ms")
	}
	logs := e.logs.String()
	for _, secret := range []string{token, upstreamKey, "<b>hi</b>"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret[:min(len(secret), 20)])
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestResidencyKeepsEUClientsInTheEU: an eu client entering through a us worker is
// refused at the door (421 wrong_region naming the eu endpoint) with nothing sent
// upstream; on an eu worker whose eu deployments are gone it fails closed, never
// falling over to us.
func TestResidencyKeepsEUClientsInTheEU(t *testing.T) {
	t.Run("a us worker refuses it at the door", func(t *testing.T) {
		e := newEnv(t, envOptions{region: "us"})
		token := e.token(t, "eu-app")
		for _, path := range []string{"/v1/chat/completions", "/v1/models"} {
			method, body := http.MethodPost, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
			if path == "/v1/models" {
				method, body = http.MethodGet, ""
			}
			resp := e.do(t, method, path, token, body, map[string]string{"X-Request-Id": "door-" + strings.ReplaceAll(path, "/", "-")})
			got := openAIError(t, resp, http.StatusMisdirectedRequest, apierr.WrongRegion)
			if !strings.Contains(got.Message, "https://eu.gateway.example") {
				t.Fatalf("%s: message %q does not name the eu endpoint", path, got.Message)
			}
			if line := accessLine(t, e.logs, "door-"+strings.ReplaceAll(path, "/", "-")); line["error_code"] != string(apierr.WrongRegion) {
				t.Fatalf("%s: access log error_code %v", path, line["error_code"])
			}
		}
		if n, m := len(e.spies["eu"].seen()), len(e.spies["us"].seen()); n+m != 0 {
			t.Fatalf("the upstreams saw %d (eu) and %d (us) requests of a client refused at the door", n, m)
		}
		// A client without residency is served from the worker's own region.
		resp := e.chat(t, e.token(t, "premium-app"), "gpt-4o-mini")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Portcullis-Deployment") != "openai-us" || len(e.spies["us"].seen()) != 1 {
			t.Fatalf("premium-app: status %d deployment %q, us spy saw %d", resp.StatusCode, resp.Header.Get("X-Portcullis-Deployment"), len(e.spies["us"].seen()))
		}
	})
	t.Run("an eu worker never routes it to us", func(t *testing.T) {
		e := newEnv(t, envOptions{region: "eu"})
		eu, us := e.spies["eu"], e.spies["us"]
		token := e.token(t, "eu-app")
		for range 3 {
			resp := e.chat(t, token, "gpt-4o-mini")
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Portcullis-Deployment") != "openai-eu" {
				t.Fatalf("status %d deployment %q", resp.StatusCode, resp.Header.Get("X-Portcullis-Deployment"))
			}
		}
		noEU := e.snapshot()
		noEU.Deployments = slices.DeleteFunc(noEU.Deployments, func(d policy.Deployment) bool { return d.Region == "eu" })
		noEU.Models = slices.DeleteFunc(noEU.Models, func(m policy.Model) bool { return !strings.HasSuffix(m.Deployment, "-us") })
		e.publish(t, noEU)
		openAIError(t, e.chat(t, token, "gpt-4o-mini"), http.StatusServiceUnavailable, apierr.NoCompliantUpstream)
		if len(eu.seen()) != 3 || len(us.seen()) != 0 {
			t.Fatalf("eu spy saw %d, us spy saw %d; want 3 and 0", len(eu.seen()), len(us.seen()))
		}
		resp := e.do(t, http.MethodGet, "/v1/models", token, "", nil)
		if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), `"data":[]`) {
			t.Fatalf("models for an eu client with no eu deployment: %s", b)
		}
	})
}

// readEvent reads one server-sent event (through its blank line).
func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var ev strings.Builder
	for {
		line, err := r.ReadString('\n')
		ev.WriteString(line)
		if err != nil {
			if ev.Len() == 0 && errors.Is(err, io.EOF) {
				return ""
			}
			t.Fatalf("reading the stream (got %q so far): %v", ev.String(), err)
		}
		if line == "\n" || line == "\r\n" {
			return ev.String()
		}
	}
}

// streamRequest starts a streaming chat. Reads of its body fail after a generous
// deadline, so a gateway that buffers the stream fails the test instead of hanging it.
func streamRequest(t *testing.T, e *env, ctx context.Context) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.base+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.token(t, "premium-app"))
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp
}

func TestStreamIsPassedThroughEventByEvent(t *testing.T) {
	e := newEnv(t, envOptions{})
	second := "data: " + chatChunk("gpt-4o", "second") + "\n\n"
	tests := []struct {
		name    string
		pauseAt int // bytes of the second event sent before the upstream waits
	}{
		{name: "upstream waits after a whole event"},
		{name: "upstream waits inside the next event's line", pauseAt: 12},
		{name: "upstream waits before the next event's blank line", pauseAt: len(second) - 1},
		{name: "upstream sends two events, then waits", pauseAt: len(second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, "data: "+chatChunk("gpt-4o", "first")+"\n\n"+second[:tt.pauseAt])
				w.(http.Flusher).Flush()
				select { // the rest only once the client has the first chunk
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, second[tt.pauseAt:])
				writeEvent(w, "[DONE]")
			})
			resp := streamRequest(t, e, t.Context())
			r := bufio.NewReader(resp.Body)
			if ev := readEvent(t, r); !strings.Contains(ev, `"first"`) {
				t.Fatalf("first event = %q", ev)
			}
			close(release)
			if ev := readEvent(t, r); ev != second {
				t.Fatalf("second event = %q", ev)
			}
			if ev := readEvent(t, r); ev != "data: [DONE]\n\n" {
				t.Fatalf("last event = %q", ev)
			}
			if ev := readEvent(t, r); ev != "" {
				t.Fatalf("event after [DONE]: %q", ev)
			}
		})
	}
}

func TestClientDisconnectCancelsTheUpstreamRequest(t *testing.T) {
	e := newEnv(t, envOptions{})
	cancelled := make(chan struct{})
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		writeEvent(w, chatChunk("gpt-4o", "first"))
		<-r.Context().Done() // blocks until the gateway drops the upstream request
		close(cancelled)
	})
	ctx, cancel := context.WithCancel(t.Context())
	resp := streamRequest(t, e, ctx)
	if ev := readEvent(t, bufio.NewReader(resp.Body)); !strings.Contains(ev, `"first"`) {
		t.Fatalf("first event = %q", ev)
	}
	cancel()
	waitfor.That(t, "the upstream request to be cancelled", func() bool {
		select {
		case <-cancelled:
			return true
		default:
			return false
		}
	})
}

func TestCutStreamEndsWithAnErrorEvent(t *testing.T) {
	tests := []struct {
		name string
		cut  func(w http.ResponseWriter)
	}{
		{name: "upstream ends the body without [DONE]", cut: func(http.ResponseWriter) {}},
		{name: "upstream drops the connection", cut: func(w http.ResponseWriter) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				writeEvent(w, chatChunk("gpt-4o", "partial"))
				tt.cut(w)
			})
			resp := streamRequest(t, e, t.Context())
			r := bufio.NewReader(resp.Body)
			if ev := readEvent(t, r); !strings.Contains(ev, `"partial"`) {
				t.Fatalf("first event = %q", ev)
			}
			last := readEvent(t, r)
			data, ok := strings.CutPrefix(strings.TrimSpace(last), "data: ")
			var body apierr.OpenAIBody
			if !ok || json.Unmarshal([]byte(data), &body) != nil || body.Error.Code != apierr.UpstreamError {
				t.Fatalf("last event = %q, want an upstream_error event", last)
			}
			rest, _ := io.ReadAll(r)
			if strings.Contains(string(rest), "[DONE]") || len(rest) != 0 {
				t.Fatalf("after the error event: %q", rest)
			}
			if n := len(e.spies["eu"].seen()); n != 1 {
				t.Fatalf("the upstream saw %d requests; a stream that reached the client is never retried", n)
			}
		})
	}
}

func TestUpstreamFailuresAreMapped(t *testing.T) {
	e := newEnv(t, envOptions{})
	slow := e.snapshot()
	for i := range slow.Deployments { // one attempt per request, and no breaker in the way
		slow.Deployments[i].TimeoutSeconds = 1
		slow.Deployments[i].Retry.MaxAttempts = 1
		slow.Deployments[i].CircuitBreaker.FailureThreshold = 1000
	}
	e.publish(t, slow)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })

	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantCode   apierr.Code // "" means the upstream's body passes through
		check      func(t *testing.T, resp *http.Response, body string)
	}{
		{name: "500 becomes 502", wantStatus: 502, wantCode: apierr.UpstreamError,
			handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "internal detail do-not-leak", 500) },
			check: func(t *testing.T, _ *http.Response, body string) {
				if strings.Contains(body, "do-not-leak") {
					t.Fatal("the upstream's 5xx body reached the client")
				}
			}},
		{name: "429 stays 429 with Retry-After", wantStatus: 429, wantCode: apierr.RateLimited,
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "7")
				http.Error(w, `{"error":{"message":"slow down"}}`, http.StatusTooManyRequests)
			},
			check: func(t *testing.T, resp *http.Response, _ string) {
				if resp.Header.Get("Retry-After") != "7" {
					t.Fatalf("Retry-After = %q", resp.Header.Get("Retry-After"))
				}
			}},
		{name: "401 for the gateway's key becomes 502", wantStatus: 502, wantCode: apierr.UpstreamError,
			handler: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "bad key", http.StatusUnauthorized) }},
		{name: "400 passes through", wantStatus: 400,
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(400)
				_, _ = io.WriteString(w, `{"error":{"message":"max_tokens too large","type":"invalid_request_error","param":"max_tokens","code":null}}`)
			},
			check: func(t *testing.T, _ *http.Response, body string) {
				if !strings.Contains(body, "max_tokens too large") {
					t.Fatalf("body = %s", body)
				}
			}},
		{name: "an answer cut short of its Content-Length becomes 502", wantStatus: 502, wantCode: apierr.UpstreamError,
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", "4000")
				_, _ = io.WriteString(w, `{"id":"chatcmpl-cut","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"part`)
			}},
		{name: "no answer in time becomes 504", wantStatus: 504, wantCode: apierr.UpstreamTimeout,
			handler: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-release:
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.spies["eu"].handle(tt.handler)
			resp := e.chat(t, e.token(t, "premium-app"), "gpt-4o")
			if tt.wantCode != "" {
				openAIError(t, resp, tt.wantStatus, tt.wantCode)
			} else if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.check != nil {
				body, _ := io.ReadAll(resp.Body)
				tt.check(t, resp, string(body))
			}
		})
	}
}

// TestAnswersCarryTheirLength: a non-streamed answer that fits the relay's buffer
// goes out whole with its Content-Length (so it is flushed before the access log
// and audit work); a larger one is relayed as it comes, whole too.
func TestAnswersCarryTheirLength(t *testing.T) {
	e := newEnv(t, envOptions{})
	token := e.token(t, "premium-app")
	for _, size := range []int{10, 200 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			content := strings.Repeat("x", size)
			e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, map[string]any{"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o",
					"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}},
					"usage":   map[string]any{"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})
			})
			resp := e.chat(t, token, "gpt-4o")
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			if !strings.Contains(string(body), content) {
				t.Fatalf("the answer (%d bytes) lost its content", len(body))
			}
			small := size < 32<<10
			if got := resp.ContentLength; small && got != int64(len(body)) || !small && got != -1 {
				t.Fatalf("Content-Length %d for a %d-byte answer (small %t)", got, len(body), small)
			}
		})
	}
}

func TestMalformedRequestsGetOpenAIErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	token := e.token(t, "premium-app")
	huge := `{"model":"gpt-4o","input":"` + strings.Repeat("x", 4<<20) + `"}`
	tests := []struct {
		name   string
		method string
		path   string
		body   io.Reader
		status int
		code   apierr.Code
	}{
		{name: "unknown /v1 path", method: "POST", path: "/v1/audio/speech", body: strings.NewReader(`{"model":"gpt-4o"}`), status: 404, code: apierr.NotFound},
		{name: "unknown path outside /v1", method: "GET", path: "/nothing/here", status: 404, code: apierr.NotFound},
		{name: "wrong method", method: "GET", path: "/v1/chat/completions", status: 405, code: apierr.MethodNotAllowed},
		{name: "malformed JSON", method: "POST", path: "/v1/chat/completions", body: strings.NewReader(`{"model":`), status: 400, code: apierr.InvalidJSON},
		{name: "missing model", method: "POST", path: "/v1/embeddings", body: strings.NewReader(`{"input":"x"}`), status: 400, code: apierr.InvalidRequest},
		{name: "body over 4 MiB with Content-Length", method: "POST", path: "/v1/embeddings", body: strings.NewReader(huge), status: 413, code: apierr.BodyTooLarge},
		{name: "body over 4 MiB chunked", method: "POST", path: "/v1/embeddings", body: io.MultiReader(strings.NewReader(huge)), status: 413, code: apierr.BodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, e.base+tt.path, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := e.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got := openAIError(t, resp, tt.status, tt.code)
			if tt.code == apierr.InvalidRequest && (got.Param == nil || *got.Param != "model") {
				t.Fatalf("param = %v, want model", got.Param)
			}
		})
	}
	if got := len(e.spies["eu"].seen()) + len(e.spies["us"].seen()); got != 0 {
		t.Fatalf("malformed requests reached an upstream %d times", got)
	}
}

// TestRequestIDs: the gateway owns every request id; a client's sane X-Request-Id is
// only echoed as X-Client-Request-Id and logged as client_request_id.
func TestRequestIDs(t *testing.T) {
	e := newEnv(t, envOptions{})
	token := e.token(t, "premium-app")
	tests := []struct {
		name   string
		sent   string
		echoed bool
	}{
		{name: "sane id is kept beside the gateway's", sent: "trace-01:AB.c_d", echoed: true},
		{name: "absent id"},
		{name: "id with spaces is dropped", sent: "not sane"},
		{name: "overlong id is dropped", sent: strings.Repeat("x", 129)},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := map[string]string{}
			if tt.sent != "" {
				headers["X-Request-Id"] = tt.sent
			}
			resp := e.do(t, http.MethodPost, "/v1/chat/completions", token, `{"model":"gpt-4o","messages":[]}`, headers)
			got := resp.Header.Get("X-Request-Id")
			if got == "" || got == tt.sent || len(got) != 32 || seen[got] {
				t.Fatalf("X-Request-Id = %q, want a fresh id of the gateway's", got)
			}
			seen[got] = true
			clientID := resp.Header.Get("X-Client-Request-Id")
			switch {
			case tt.echoed && clientID != tt.sent:
				t.Fatalf("X-Client-Request-Id = %q, want %q", clientID, tt.sent)
			case !tt.echoed && clientID != "":
				t.Fatalf("X-Client-Request-Id = %q, want none", clientID)
			}
			up := e.spies["eu"].seen()
			if up[len(up)-1].RequestID != got {
				t.Fatalf("upstream got request id %q, client got %q", up[len(up)-1].RequestID, got)
			}
			line := accessLine(t, e.logs, got)
			if tt.echoed && line["client_request_id"] != tt.sent {
				t.Fatalf("access log client_request_id = %v, want %q", line["client_request_id"], tt.sent)
			}
		})
	}
	t.Run("a repeated client id is still a new request each time", func(t *testing.T) {
		for range 3 {
			resp := e.do(t, http.MethodPost, "/v1/chat/completions", token, `{"model":"gpt-4o","messages":[]}`,
				map[string]string{"X-Request-Id": "same"})
			if id := resp.Header.Get("X-Request-Id"); seen[id] {
				t.Fatalf("request id %q repeated", id)
			} else {
				seen[id] = true
			}
		}
	})
	t.Run("errors and ops endpoints carry one too", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/v1/nope"} {
			if resp := e.do(t, http.MethodGet, path, "", "", nil); resp.Header.Get("X-Request-Id") == "" {
				t.Fatalf("%s has no X-Request-Id", path)
			}
		}
	})
}

func TestMetricsByRouteAndPolicyVersion(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.chat(t, e.token(t, "premium-app"), "gpt-4o")
	e.do(t, http.MethodGet, "/v1/does-not-exist", "", "", nil)
	// A 200 that fits the relay's buffer is flushed before its request is counted.
	var m string
	waitfor.That(t, "the answered chat completion to be counted", func() bool {
		m = e.metrics(t)
		return strings.Contains(m, `portcullis_dataplane_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1`)
	})
	for _, want := range []string{
		`portcullis_dataplane_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1`,
		`portcullis_dataplane_http_requests_total{method="GET",route="unmatched",status="404"} 1`,
		`portcullis_dataplane_http_request_duration_seconds_bucket{method="POST",route="/v1/chat/completions",status="200",le="+Inf"} 1`,
		`portcullis_dataplane_policy_version 1`,
		`portcullis_dataplane_policy_snapshots_rejected_total{reason="invalid"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
