package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/dataplane/internal/limits"
	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// The request path's unit tests: a real API handler over a compiled policy whose
// deployments are httptest upstreams speaking OpenAI's or Anthropic's wire
// protocol. No NATS, no limits, no audit: what is under test is routing, the
// translators, the classification of answers and the retry and fallback
// decisions.

// upstreamServer is one scripted upstream: each call takes the next answer (the
// last one repeats) and is recorded.
type upstreamServer struct {
	*httptest.Server
	mu      sync.Mutex
	answers []http.HandlerFunc
	calls   []upstreamCall
}

type upstreamCall struct {
	Path string
	Body map[string]any
}

func newUpstream(t *testing.T, answers ...http.HandlerFunc) *upstreamServer {
	t.Helper()
	u := &upstreamServer{answers: answers}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		u.mu.Lock()
		n := len(u.calls)
		u.calls = append(u.calls, upstreamCall{Path: r.URL.Path, Body: body})
		answer := u.answers[min(n, len(u.answers)-1)]
		u.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstreamServer) seen() []upstreamCall {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upstreamCall(nil), u.calls...)
}

// Scripted answers.
func answerJSON(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func answerWith(status int, header, value string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set(header, value)
		w.WriteHeader(status)
	}
}

// answerStream writes events, then ends the stream (cut true: without its proper end).
func answerStream(events ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, ev := range events {
			_, _ = io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	}
}

const (
	chatOK        = `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`
	messageOK     = `{"id":"msg_1","type":"message","role":"assistant","model":"claude-up","content":[{"type":"text","text":"hello"}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":1}}`
	embeddingsOK  = `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"usage":{"prompt_tokens":2,"total_tokens":2}}`
	anthropicBusy = `{"type":"error","error":{"type":"overloaded_error","message":"busy"}}`
)

var (
	openaiStream = []string{
		"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hel\"}}]}\n\n",
		"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
		"data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
		"data: [DONE]\n\n",
	}
	anthropicStream = []string{
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":5,\"output_tokens\":0}}}\n\n",
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hel\"}}\n\n",
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n",
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n",
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	}
)

// deployment is one upstream of a test policy, serving model as "<model>-up".
type deployment struct {
	name, kind, model string
	up                *upstreamServer
	attempts          int // retry.max_attempts; 0 means 1
}

// gateway is the API handler over a policy of deployments, with the fallback maps
// given as from→to (for the provider of from's first deployment).
type gateway struct {
	url string
}

func newGateway(t *testing.T, guard Guard, fallbacks map[string]string, deps ...deployment) *gateway {
	t.Helper()
	return newGatewayWith(t, func(o *Options) { o.Guard = guard }, fallbacks, deps...)
}

// newGatewayWith is newGateway with options set by configure. Its tier allows 2^40
// tokens an hour, which only a Limiter in the options enforces.
func newGatewayWith(t *testing.T, configure func(*Options), fallbacks map[string]string, deps ...deployment) *gateway {
	t.Helper()
	return newGatewayPolicy(t, nil, configure, fallbacks, deps...)
}

// newGatewayPolicy is newGatewayWith with the test policy changed by mutate (nil:
// unchanged) before it is compiled.
func newGatewayPolicy(t *testing.T, mutate func(*policy.Snapshot), configure func(*Options), fallbacks map[string]string, deps ...deployment) *gateway {
	t.Helper()
	snap := &policy.Snapshot{
		SchemaVersion: policy.SchemaVersion, Version: 1, GeneratedAt: time.Now().UTC(),
		Tenants: []policy.Tenant{{Name: "t"}},
		Tiers: []policy.Tier{{Name: "all", AllowedModels: []string{"gpt", "claude", "llama"}, TokensPerHour: 1 << 40,
			AllowedOperations: []string{policy.OpCompletion, policy.OpEmbeddings}}},
		Clients: []policy.Client{{ClientID: "c1", Tenant: "t", Tier: "all", Enabled: true}},
	}
	providerOf := map[string]string{}
	for _, kind := range policy.ProviderKinds {
		snap.Providers = append(snap.Providers, policy.Provider{Name: kind, Kind: kind})
	}
	for _, d := range deps {
		if !slices.ContainsFunc(snap.Providers, func(p policy.Provider) bool { return p.Kind == d.kind }) {
			snap.Providers = append(snap.Providers, policy.Provider{Name: d.kind, Kind: d.kind})
		}
	}
	for _, d := range deps {
		attempts := max(d.attempts, 1)
		snap.Deployments = append(snap.Deployments, policy.Deployment{
			Name: d.name, Provider: d.kind, Region: "eu", Kind: policy.KindCloud, BaseURL: d.up.URL,
			KeySource: policy.KeySourceNone, TLS: policy.TLS{Verify: true}, TimeoutSeconds: 5,
			Retry:          policy.Retry{MaxAttempts: attempts, Backoff: "constant"},
			CircuitBreaker: policy.CircuitBreaker{FailureThreshold: 100, ResetTimeoutSeconds: 60},
			Enabled:        true,
		})
		snap.Models = append(snap.Models, policy.Model{ID: d.name, Name: d.model, Deployment: d.name, UpstreamModel: d.model + "-up", Weight: 1})
		if _, ok := providerOf[d.model]; !ok {
			providerOf[d.model] = d.kind
		}
	}
	for from, to := range fallbacks {
		snap.FallbackMaps = append(snap.FallbackMaps, policy.FallbackMap{ID: from, Provider: providerOf[from], FromModel: from, ToModel: to})
	}
	if mutate != nil {
		mutate(snap)
	}
	known := true
	for _, d := range deps {
		known = known && slices.Contains(policy.ProviderKinds, d.kind)
	}
	if err := snap.Validate(); known && err != nil { // a kind of a test's own is not valid policy
		t.Fatalf("test policy: %v", err)
	}
	log := slog.New(slog.DiscardHandler)
	o := Options{
		Policy:               staticPolicy{policycache.Compile(snap, "eu", log)},
		Verifier:             tokenIsClient{},
		Region:               "eu",
		ExposeRoutingHeaders: true,
		MaxBodyBytes:         1 << 20,
		Log:                  log,
		Metrics:              httpmetrics.New("test"),
	}
	configure(&o)
	h := New(o)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &gateway{url: srv.URL}
}

// staticPolicy is a PolicySource that always has p.
type staticPolicy struct{ p *policycache.Policy }

func (s staticPolicy) Current() *policycache.Policy { return s.p }

// tokenIsClient accepts any bearer token as the client it names: token checks
// are the auth package's tests.
type tokenIsClient struct{}

func (tokenIsClient) Verify(_ context.Context, authorization string, _ auth.Revocations) (auth.Identity, error) {
	id, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok || id == "" {
		return auth.Identity{}, apierr.New(apierr.InvalidToken, "no token")
	}
	return auth.Identity{ClientID: id}, nil
}

// answer is what the gateway answered.
type answer struct {
	status     int
	header     http.Header
	body       string
	code       string // the error code in either schema, if any
	deployment string
}

func (g *gateway) post(t *testing.T, path, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer c1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(raw), deployment: resp.Header.Get(HeaderDeployment)}
	var e struct {
		Error struct {
			Code string `json:"code"`
			Type string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil {
		a.code = e.Error.Code
		if a.code == "" {
			a.code = e.Error.Type // Anthropic's schema has the type only
		}
	}
	return a
}

const (
	chatGPT    = `{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`
	chatClaude = `{"model":"claude","messages":[{"role":"user","content":"hi"}]}`
	msgsClaude = `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	msgsGPT    = `{"model":"gpt","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	embedGPT   = `{"model":"gpt","input":"hi"}`
	embedCl    = `{"model":"claude","input":"hi"}`
)

// TestTranslatorsPerPair: each pair of client API and provider goes to its
// translator, which sends the provider's path and body and relays the answer in the
// client's API; a pair without a translator is a 400 and calls nothing.
func TestTranslatorsPerPair(t *testing.T) {
	tests := []struct {
		name     string
		kind     string
		upstream http.HandlerFunc
		path     string
		body     string
		wantPath string // the upstream path called; "" for none
		want     int
		wantIn   string // in the answer's body
	}{
		{name: "chat to openai", kind: policy.ProviderOpenAI, upstream: answerJSON(200, chatOK),
			path: "/v1/chat/completions", body: chatGPT, wantPath: "/v1/chat/completions", want: 200, wantIn: `"content":"hello"`},
		{name: "chat to ollama", kind: policy.ProviderOllama, upstream: answerJSON(200, chatOK),
			path: "/v1/chat/completions", body: chatGPT, wantPath: "/v1/chat/completions", want: 200, wantIn: `"content":"hello"`},
		{name: "embeddings to openai", kind: policy.ProviderOpenAI, upstream: answerJSON(200, embeddingsOK),
			path: "/v1/embeddings", body: embedGPT, wantPath: "/v1/embeddings", want: 200, wantIn: `"embedding"`},
		{name: "chat translated to anthropic", kind: policy.ProviderAnthropic, upstream: answerJSON(200, messageOK),
			path: "/v1/chat/completions", body: chatClaude, wantPath: "/v1/messages", want: 200, wantIn: `"object":"chat.completion"`},
		{name: "messages to anthropic", kind: policy.ProviderAnthropic, upstream: answerJSON(200, messageOK),
			path: "/v1/messages", body: msgsClaude, wantPath: "/v1/messages", want: 200, wantIn: `"type":"message"`},
		{name: "anthropic 4xx in openai schema", kind: policy.ProviderAnthropic,
			upstream: answerJSON(400, `{"type":"error","error":{"type":"invalid_request_error","message":"bad"}}`),
			path:     "/v1/chat/completions", body: chatClaude, wantPath: "/v1/messages", want: 400, wantIn: `"code":"invalid_request"`},
		{name: "openai 4xx passes through", kind: policy.ProviderOpenAI, upstream: answerJSON(404, `{"error":{"message":"no such model","code":"model_not_found"}}`),
			path: "/v1/chat/completions", body: chatGPT, wantPath: "/v1/chat/completions", want: 404, wantIn: `model_not_found`},
		{name: "messages not on openai", kind: policy.ProviderOpenAI, upstream: answerJSON(200, chatOK),
			path: "/v1/messages", body: msgsGPT, want: 400, wantIn: "not served by an Anthropic deployment"},
		{name: "embeddings not on anthropic", kind: policy.ProviderAnthropic, upstream: answerJSON(200, messageOK),
			path: "/v1/embeddings", body: embedCl, want: 400, wantIn: "does not serve the embeddings operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := "gpt"
			if tt.kind == policy.ProviderAnthropic {
				model = "claude"
			}
			up := newUpstream(t, tt.upstream)
			g := newGateway(t, nil, nil, deployment{name: "d1", kind: tt.kind, model: model, up: up})
			got := g.post(t, tt.path, tt.body)
			if got.status != tt.want || !strings.Contains(got.body, tt.wantIn) {
				t.Fatalf("answer %d %s, want %d with %q", got.status, got.body, tt.want, tt.wantIn)
			}
			calls := up.seen()
			switch {
			case tt.wantPath == "" && len(calls) != 0:
				t.Fatalf("upstream called %v, want no call", calls)
			case tt.wantPath != "" && (len(calls) != 1 || calls[0].Path != tt.wantPath):
				t.Fatalf("upstream calls %v, want one to %s", calls, tt.wantPath)
			case tt.wantPath != "" && calls[0].Body["model"] != model+"-up":
				t.Fatalf("upstream model %v, want %s-up", calls[0].Body["model"], model)
			}
		})
	}
}

// TestStreamsPerPair: every pair relays a stream in the client's API, and a stream
// the upstream cuts after its first event ends with the client API's error event.
func TestStreamsPerPair(t *testing.T) {
	tests := []struct {
		name       string
		kind       string
		events     []string
		path, body string
		wantIn     []string
		wantEnd    string // how the stream ends
	}{
		{name: "openai", kind: policy.ProviderOpenAI, events: openaiStream, path: "/v1/chat/completions",
			body:   `{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			wantIn: []string{`"content":"hel"`, `"content":"lo"`}, wantEnd: "data: [DONE]\n\n"},
		{name: "openai to anthropic", kind: policy.ProviderAnthropic, events: anthropicStream, path: "/v1/chat/completions",
			body:   `{"model":"claude","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			wantIn: []string{`"object":"chat.completion.chunk"`, `"content":"hel"`}, wantEnd: "data: [DONE]\n\n"},
		{name: "messages", kind: policy.ProviderAnthropic, events: anthropicStream, path: "/v1/messages",
			body:   `{"model":"claude","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`,
			wantIn: []string{`"text":"hel"`}, wantEnd: "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"},
	}
	for _, tt := range tests {
		model := "gpt"
		if tt.kind == policy.ProviderAnthropic {
			model = "claude"
		}
		t.Run(tt.name, func(t *testing.T) {
			g := newGateway(t, nil, nil, deployment{name: "d1", kind: tt.kind, model: model, up: newUpstream(t, answerStream(tt.events...))})
			got := g.post(t, tt.path, tt.body)
			if got.status != 200 || !strings.HasSuffix(got.body, tt.wantEnd) {
				t.Fatalf("answer %d %q, want a stream ending %q", got.status, got.body, tt.wantEnd)
			}
			for _, in := range tt.wantIn {
				if !strings.Contains(got.body, in) {
					t.Fatalf("stream %q lacks %q", got.body, in)
				}
			}
			if strings.Contains(got.body, `"usage"`) && tt.path != "/v1/messages" {
				t.Fatalf("stream %q shows usage the client did not ask for", got.body)
			}
		})
		t.Run(tt.name+" cut", func(t *testing.T) {
			cut := answerStream(tt.events[:2]...)
			g := newGateway(t, nil, nil, deployment{name: "d1", kind: tt.kind, model: model, up: newUpstream(t, cut)})
			got := g.post(t, tt.path, tt.body)
			wantCut := string(errorEvent)
			if tt.path == "/v1/messages" {
				wantCut = string(messagesCutEvent)
			}
			if got.status != 200 || !strings.HasSuffix(got.body, wantCut) || strings.Contains(got.body, "[DONE]") {
				t.Fatalf("cut stream answered %d %q, want it to end with %q", got.status, got.body, wantCut)
			}
		})
	}
}

// TestRetryAndFallbackDecisions: what a failed attempt leads to: a retry on the
// same or another deployment, the fallback model, or the failure itself.
func TestRetryAndFallbackDecisions(t *testing.T) {
	tests := []struct {
		name      string
		primary   []http.HandlerFunc // the primary deployment's answers
		attempts  int
		fallback  bool // the policy maps gpt to the self-hosted llama
		want      int
		wantCode  string
		wantCalls int    // calls to the primary
		wantFrom  string // the deployment that answered
		wantFell  bool   // llama answered, with the fallback header
	}{
		{name: "success", primary: []http.HandlerFunc{answerJSON(200, chatOK)}, attempts: 2,
			want: 200, wantCalls: 1, wantFrom: "gpt-a"},
		{name: "5xx retried", primary: []http.HandlerFunc{answerJSON(500, `{}`), answerJSON(200, chatOK)}, attempts: 2,
			want: 200, wantCalls: 2, wantFrom: "gpt-a"},
		{name: "short Retry-After retried", primary: []http.HandlerFunc{answerWith(429, "Retry-After", "0"), answerJSON(200, chatOK)}, attempts: 2,
			want: 200, wantCalls: 2, wantFrom: "gpt-a"},
		{name: "attempts spent", primary: []http.HandlerFunc{answerJSON(503, `{}`)}, attempts: 2,
			want: 502, wantCode: "upstream_error", wantCalls: 2},
		{name: "429 kept with attempts spent", primary: []http.HandlerFunc{answerWith(429, "Retry-After", "7")}, attempts: 1,
			want: 429, wantCode: "rate_limit_exceeded", wantCalls: 1},
		{name: "client error not retried", primary: []http.HandlerFunc{answerJSON(400, `{"error":{"message":"bad","code":"bad_param"}}`)}, attempts: 3,
			want: 400, wantCalls: 1, wantFrom: "gpt-a"},
		{name: "refused key not retried to the client", primary: []http.HandlerFunc{answerJSON(401, `{}`)}, attempts: 1,
			want: 502, wantCode: "upstream_error", wantCalls: 1},
		{name: "5xx falls back", primary: []http.HandlerFunc{answerJSON(500, `{}`)}, attempts: 1, fallback: true,
			want: 200, wantCalls: 1, wantFrom: "llama-local", wantFell: true},
		{name: "long Retry-After falls back", primary: []http.HandlerFunc{answerWith(429, "Retry-After", "120")}, attempts: 2, fallback: true,
			want: 200, wantCalls: 1, wantFrom: "llama-local", wantFell: true},
		{name: "client error does not fall back", primary: []http.HandlerFunc{answerJSON(422, `{"error":{"message":"bad"}}`)}, attempts: 1, fallback: true,
			want: 422, wantCalls: 1, wantFrom: "gpt-a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			primary := newUpstream(t, tt.primary...)
			local := newUpstream(t, answerJSON(200, chatOK))
			var fallbacks map[string]string
			if tt.fallback {
				fallbacks = map[string]string{"gpt": "llama"}
			}
			g := newGateway(t, nil, fallbacks,
				deployment{name: "gpt-a", kind: policy.ProviderOpenAI, model: "gpt", up: primary, attempts: tt.attempts},
				deployment{name: "llama-local", kind: policy.ProviderOllama, model: "llama", up: local})
			got := g.post(t, "/v1/chat/completions", chatGPT)
			if got.status != tt.want || (tt.wantCode != "" && got.code != tt.wantCode) {
				t.Fatalf("answer %d %s, want %d %s", got.status, got.body, tt.want, tt.wantCode)
			}
			if n := len(primary.seen()); n != tt.wantCalls {
				t.Fatalf("primary called %d times, want %d", n, tt.wantCalls)
			}
			if tt.wantFrom != "" && got.deployment != tt.wantFrom {
				t.Fatalf("answered by %q, want %q", got.deployment, tt.wantFrom)
			}
			if fell := got.header.Get(HeaderFallback) == "llama"; fell != tt.wantFell {
				t.Fatalf("fallback header %q, want fell back %v", got.header.Get(HeaderFallback), tt.wantFell)
			}
			if !tt.wantFell && len(local.seen()) != 0 {
				t.Fatalf("the fallback was called without a fallback")
			}
		})
	}
}

// TestRetryGoesToAnotherDeployment: a retry prefers a deployment of the model that
// has not been tried.
func TestRetryGoesToAnotherDeployment(t *testing.T) {
	a := newUpstream(t, answerJSON(500, `{}`))
	b := newUpstream(t, answerJSON(200, chatOK))
	g := newGateway(t, nil, nil,
		deployment{name: "gpt-a", kind: policy.ProviderOpenAI, model: "gpt", up: a, attempts: 2},
		deployment{name: "gpt-b", kind: policy.ProviderOpenAI, model: "gpt", up: b, attempts: 2})
	for range 4 { // whichever the balancer draws first, the retry goes to the other
		got := g.post(t, "/v1/chat/completions", chatGPT)
		if got.status != 200 || got.deployment != "gpt-b" {
			t.Fatalf("answer %d from %q, want 200 from gpt-b", got.status, got.deployment)
		}
	}
}

// TestOutcome classifies relayed answers for the breaker.
func TestOutcome(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	cut := apierr.New(apierr.UpstreamError, "cut")
	tests := []struct {
		name   string
		ctx    context.Context
		status int
		err    error
		want   string
	}{
		{"success", live, 200, nil, "success"},
		{"client error", live, 400, nil, "success"},
		{"server error", live, 500, nil, "failure"},
		{"rate limited", live, 429, nil, "failure"},
		{"refused key", live, 401, nil, "failure"},
		{"forbidden", live, 403, nil, "failure"},
		{"answer cut", live, 200, cut, "failure"},
		{"guard stopped the stream", live, 200, &guardStop{err: apierr.New(apierr.InvalidRequest, "no")}, "success"},
		{"client went away", cancelled, 500, cut, "ignored"},
	}
	names := map[string]string{}
	for _, tt := range tests {
		got := outcome(tt.ctx, tt.status, tt.err)
		names[tt.name] = outcomeName(got)
		if names[tt.name] != tt.want {
			t.Errorf("%s: outcome %s, want %s", tt.name, names[tt.name], tt.want)
		}
	}
}

// recordingGuard records what it is shown, and refuses a request whose text
// contains refuseIn, or a streamed delta containing stopAt.
type recordingGuard struct {
	refuseIn, stopAt string
	mu               sync.Mutex
	requests         []GuardRequest
	deltas           []string
}

func (g *recordingGuard) Inspect(_ context.Context, r GuardRequest) (StreamWatcher, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, r)
	for _, m := range r.Messages {
		if g.refuseIn != "" && strings.Contains(m.Text, g.refuseIn) {
			return nil, apierr.New(apierr.InvalidRequest, "refused by the guard")
		}
	}
	return g, nil
}

func (g *recordingGuard) Delta(text []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.deltas = append(g.deltas, string(text))
	if g.stopAt != "" && strings.Contains(string(text), g.stopAt) {
		return apierr.New(apierr.InvalidRequest, "stopped by the guard")
	}
	return nil
}

// TestGuardHook: the guard sees every request's messages before any upstream call
// and every streamed text delta before the client, in each pair; a refusal is the
// guard's error, and a stopped stream ends with it.
func TestGuardHook(t *testing.T) {
	tests := []struct {
		name, kind, path, body string
		events                 []string
		wantMsgs               []Message
		wantEnd                string // the last event of a stream the guard stopped
	}{
		{name: "openai", kind: policy.ProviderOpenAI, events: openaiStream, path: "/v1/chat/completions",
			body:     `{"model":"gpt","stream":true,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}}]}]}`,
			wantMsgs: []Message{{"system", "be brief"}, {"user", "hi"}}, wantEnd: `"code":"invalid_request"`},
		{name: "openai to anthropic", kind: policy.ProviderAnthropic, events: anthropicStream, path: "/v1/chat/completions",
			body:     `{"model":"claude","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			wantMsgs: []Message{{"user", "hi"}}, wantEnd: `"code":"invalid_request"`},
		{name: "messages", kind: policy.ProviderAnthropic, events: anthropicStream, path: "/v1/messages",
			body:     `{"model":"claude","stream":true,"max_tokens":9,"system":"be brief","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`,
			wantMsgs: []Message{{"system", "be brief"}, {"user", "hi"}}, wantEnd: `"type":"invalid_request_error"`},
	}
	for _, tt := range tests {
		model := "gpt"
		if tt.kind == policy.ProviderAnthropic {
			model = "claude"
		}
		t.Run(tt.name+" watched", func(t *testing.T) {
			guard := &recordingGuard{}
			g := newGateway(t, guard, nil, deployment{name: "d1", kind: tt.kind, model: model, up: newUpstream(t, answerStream(tt.events...))})
			if got := g.post(t, tt.path, tt.body); got.status != 200 {
				t.Fatalf("answer %d %s", got.status, got.body)
			}
			if len(guard.requests) != 1 || guard.requests[0].ClientID != "c1" || guard.requests[0].Model != model {
				t.Fatalf("guard shown %+v", guard.requests)
			}
			if got := guard.requests[0].Messages; !equalMessages(got, tt.wantMsgs) {
				t.Fatalf("guard shown messages %+v, want %+v", got, tt.wantMsgs)
			}
			if strings.Join(guard.deltas, "|") != "hel|lo" {
				t.Fatalf("guard shown deltas %q, want hel and lo", guard.deltas)
			}
		})
		t.Run(tt.name+" refused", func(t *testing.T) {
			up := newUpstream(t, answerStream(tt.events...))
			g := newGateway(t, &recordingGuard{refuseIn: "hi"}, nil, deployment{name: "d1", kind: tt.kind, model: model, up: up})
			got := g.post(t, tt.path, tt.body)
			if got.status != 400 || !strings.Contains(got.body, "refused by the guard") || len(up.seen()) != 0 {
				t.Fatalf("answer %d %s with %d upstream calls, want the guard's 400 and no call", got.status, got.body, len(up.seen()))
			}
		})
		t.Run(tt.name+" stopped", func(t *testing.T) {
			g := newGateway(t, &recordingGuard{stopAt: "lo"}, nil, deployment{name: "d1", kind: tt.kind, model: model, up: newUpstream(t, answerStream(tt.events...))})
			got := g.post(t, tt.path, tt.body)
			last := got.body[strings.LastIndex(strings.TrimSuffix(got.body, "\n\n"), "\n\n")+2:]
			if got.status != 200 || !strings.Contains(last, "stopped by the guard") || !strings.Contains(last, tt.wantEnd) ||
				strings.Contains(got.body, `"lo"`) || strings.Contains(got.body, "[DONE]") {
				t.Fatalf("stopped stream %q: want it to end with the guard's error before the refused text", got.body)
			}
		})
	}
}

// TestRequestMessages: the text a guard is shown of each operation.
func TestRequestMessages(t *testing.T) {
	tests := []struct {
		op, body string
		want     []Message
	}{
		{policy.OpTextCompletion, `{"model":"m","prompt":["a","b"]}`, []Message{{"user", "a"}, {"user", "b"}}},
		{policy.OpTextCompletion, `{"model":"m","prompt":"a"}`, []Message{{"user", "a"}}},
		{policy.OpEmbeddings, `{"model":"m","input":[[1,2],"b"]}`, []Message{{"user", "b"}}},
		{policy.OpChat, `{"model":"m","messages":[{"role":"tool","content":"out"},{"role":"assistant","content":null}]}`, []Message{{"tool", "out"}}},
	}
	for _, tt := range tests {
		req, err := decodeRequest([]byte(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		req.op = tt.op
		if got := requestMessages(req); !equalMessages(got, tt.want) {
			t.Errorf("%s %s: %+v, want %+v", tt.op, tt.body, got, tt.want)
		}
	}
}

func equalMessages(a, b []Message) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func outcomeName(o upstream.Outcome) string {
	switch o {
	case upstream.Success:
		return "success"
	case upstream.Failure:
		return "failure"
	case upstream.Ignored:
		return "ignored"
	}
	return "unknown"
}

// TestUsagePerPair: what each translator says the answer used, which settles the
// token reservation (used) and goes into the audit event (split): the upstream's
// report, else an estimate from the delivered text, else the reservation.
func TestUsagePerPair(t *testing.T) {
	const reserved, prompt = 100, 7
	stripUsage := func(events []string) []string {
		var out []string
		for _, ev := range events {
			if !strings.Contains(ev, `"usage"`) {
				out = append(out, ev)
			}
		}
		return out
	}
	tests := []struct {
		name     string
		pair     func(*exchange) translator
		api      clientAPI
		op       string
		stream   bool
		status   int
		body     string
		events   []string
		wantUsed int64
		wantIn   int64
		wantOut  int64
	}{
		{name: "openai reported", pair: newPassthrough, op: policy.OpChat, status: 200, body: chatOK, wantUsed: 6, wantIn: 5, wantOut: 1},
		{name: "openai estimated", pair: newPassthrough, op: policy.OpChat, status: 200,
			body: `{"choices":[{"message":{"content":"hello"}}]}`, wantUsed: prompt + 1, wantIn: prompt, wantOut: 1},
		{name: "openai stream reported", pair: newPassthrough, op: policy.OpChat, stream: true, events: openaiStream, wantUsed: 7, wantIn: 5, wantOut: 2},
		{name: "openai stream estimated", pair: newPassthrough, op: policy.OpChat, stream: true, events: stripUsage(openaiStream),
			wantUsed: prompt + 1, wantIn: prompt, wantOut: 1},
		{name: "openai 5xx used nothing", pair: newPassthrough, op: policy.OpChat, status: 500, body: `{}`},
		{name: "anthropic translated reported", pair: newChatToMessages, op: policy.OpChat, status: 200, body: messageOK, wantUsed: 6, wantIn: 5, wantOut: 1},
		{name: "anthropic translated stream reported", pair: newChatToMessages, op: policy.OpChat, stream: true, events: anthropicStream,
			wantUsed: 7, wantIn: 5, wantOut: 2},
		{name: "anthropic translated stream unreported keeps the reservation", pair: newChatToMessages, op: policy.OpChat, stream: true,
			events: anthropicStream[1:], wantUsed: reserved, wantIn: prompt},
		{name: "messages reported", pair: newMessages, api: apiAnthropic, op: policy.OpMessages, status: 200, body: messageOK, wantUsed: 6, wantIn: 5, wantOut: 1},
		{name: "messages unreported keeps the reservation", pair: newMessages, api: apiAnthropic, op: policy.OpMessages, status: 200,
			body: `{"type":"message","content":[]}`, wantUsed: reserved, wantIn: prompt},
		{name: "messages stream reported", pair: newMessages, api: apiAnthropic, op: policy.OpMessages, stream: true, events: anthropicStream,
			wantUsed: 7, wantIn: 5, wantOut: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := decodeRequest([]byte(`{"model":"m","messages":[]}`))
			if err != nil {
				t.Fatal(err)
			}
			req.api, req.op, req.Stream = tt.api, tt.op, tt.stream
			x := &exchange{req: req, capture: true, limited: true, prompt: prompt}
			x.tr = tt.pair(x)
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader(tt.body))}
			if tt.stream {
				resp.StatusCode, resp.Header = 200, http.Header{"Content-Type": {"text/event-stream"}}
				resp.Body = io.NopCloser(strings.NewReader(strings.Join(tt.events, "")))
			}
			rec := httptest.NewRecorder()
			c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, "/", nil), rec)
			_ = x.tr.relay(c, resp, "d1")
			if got := x.used(reserved); got != tt.wantUsed {
				t.Errorf("used %d, want %d", got, tt.wantUsed)
			}
			if in, out := x.split(); in != tt.wantIn || out != tt.wantOut {
				t.Errorf("split %d+%d, want %d+%d", in, out, tt.wantIn, tt.wantOut)
			}
		})
	}
}

// TestStreamBrokenBeforeItsFirstEventIsRetried: a stream that ends before any
// event reached the client is retried like any failed attempt, and the answer that
// reached the client is the second attempt's, whole.
func TestStreamBrokenBeforeItsFirstEventIsRetried(t *testing.T) {
	broken := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK) // and not one event
	}
	up := newUpstream(t, broken, answerStream(openaiStream...))
	g := newGateway(t, nil, nil, deployment{name: "gpt-a", kind: policy.ProviderOpenAI, model: "gpt", up: up, attempts: 2})
	got := g.post(t, "/v1/chat/completions", `{"model":"gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if got.status != 200 || !strings.Contains(got.body, `"content":"hel"`) || !strings.HasSuffix(got.body, "data: [DONE]\n\n") {
		t.Fatalf("answer %d %q, want the second attempt's whole stream", got.status, got.body)
	}
	if n := len(up.seen()); n != 2 {
		t.Fatalf("upstream called %d times, want 2", n)
	}
	if strings.Contains(got.body, string(errorEvent)) {
		t.Fatalf("the retried stream carries the cut event: %q", got.body)
	}
}

// TestUpstreamAnswersAreSanitized: an upstream's 4xx keeps its message but not the
// provider's account ids, an answer that is not JSON is not relayed, and no answer
// is content-sniffed.
func TestUpstreamAnswersAreSanitized(t *testing.T) {
	const leaky = `{"error":{"message":"Rate limit reached for gpt-4o in organization org-AbC123xyz789QrSt00 on tokens per min; project proj_Zz9Yy8Xx7Ww6Vv5Uu4, user user-Q1w2E3r4T5y6U7i8O9; user-defined roles stay","type":"requests","code":"rate_limit_exceeded"}}`
	html := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html><script>alert(1)</script></html>")
	}
	tests := []struct {
		name, kind, path, body string
		answer                 http.HandlerFunc
		want                   int
		wantIn, wantOut        []string
	}{
		{name: "openai 4xx", kind: policy.ProviderOpenAI, path: "/v1/chat/completions", body: chatGPT, answer: answerJSON(404, leaky), want: 404,
			wantIn: []string{"Rate limit reached", "org-redacted", "proj_redacted", "user-redacted", "user-defined roles stay"}, wantOut: []string{"AbC123xyz789QrSt00", "Zz9Yy8Xx7Ww6Vv5Uu4", "Q1w2E3r4T5y6U7i8O9"}},
		{name: "anthropic 4xx translated", kind: policy.ProviderAnthropic, path: "/v1/chat/completions", body: chatClaude,
			answer: answerJSON(400, `{"type":"error","error":{"type":"invalid_request_error","message":"bad request for org-AbC123xyz789QrSt00"}}`), want: 400,
			wantIn: []string{"org-redacted"}, wantOut: []string{"AbC123xyz789QrSt00"}},
		{name: "messages 4xx", kind: policy.ProviderAnthropic, path: "/v1/messages", body: msgsClaude,
			answer: answerJSON(400, `{"type":"error","error":{"type":"invalid_request_error","message":"bad request for org-AbC123xyz789QrSt00"}}`), want: 400,
			wantIn: []string{"org-redacted", "invalid_request_error"}, wantOut: []string{"AbC123xyz789QrSt00"}},
		{name: "html 200", kind: policy.ProviderOpenAI, path: "/v1/chat/completions", body: chatGPT, answer: html, want: 502,
			wantIn: []string{"upstream_error"}, wantOut: []string{"<script>"}},
		{name: "plain-text 400", kind: policy.ProviderOpenAI, path: "/v1/chat/completions", body: chatGPT,
			answer: func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "<b>bad</b> org-AbC123xyz789QrSt00", http.StatusBadRequest)
			},
			want: 400, wantIn: []string{"invalid_request", "status 400"}, wantOut: []string{"<b>", "AbC123xyz789QrSt00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := "gpt"
			if tt.kind == policy.ProviderAnthropic {
				model = "claude"
			}
			g := newGateway(t, nil, nil, deployment{name: "d1", kind: tt.kind, model: model, up: newUpstream(t, tt.answer)})
			got := g.post(t, tt.path, tt.body)
			if got.status != tt.want {
				t.Fatalf("answer %d %s, want %d", got.status, got.body, tt.want)
			}
			for _, in := range tt.wantIn {
				if !strings.Contains(got.body, in) {
					t.Errorf("answer %s lacks %q", got.body, in)
				}
			}
			for _, out := range tt.wantOut {
				if strings.Contains(got.body, out) {
					t.Errorf("answer %s has %q", got.body, out)
				}
			}
			if got.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got.header.Get("X-Content-Type-Options"))
			}
		})
	}
}

// TestTokenIsCheckedBeforeTheBody: a request without a valid token is refused from
// its headers, without waiting for the body it declares (1 MB, under the limit).
func TestTokenIsCheckedBeforeTheBody(t *testing.T) {
	up := newUpstream(t, answerJSON(200, chatOK))
	g := newGateway(t, nil, nil, deployment{name: "d1", kind: policy.ProviderOpenAI, model: "gpt", up: up})
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"+
		"Authorization: Basic bm90OmEtdG9rZW4=\r\nContent-Length: 1000000\r\n\r\n{\"model\":"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second)) // the body would take a minute to time out
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body arrived: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(up.seen()) != 0 {
		t.Fatalf("status %d with %d upstream calls, want 401 and none", resp.StatusCode, len(up.seen()))
	}
}

// reservations records the tokens each admission asks for, and refuses it: what is
// under test is the reservation, not the limiter.
type reservations struct {
	mu     sync.Mutex
	tokens []int64
}

func (r *reservations) Admit(_ context.Context, _ string, lim limits.Limits, tokens int64) (*limits.Ticket, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tokens = append(r.tokens, tokens)
	return nil, &limits.Denied{Kind: limits.KindTokens, Limit: lim.TokensPerHour, RetryAfter: time.Second}
}

// reservationCase is one request and what its admission reserves for the output
// (want), or the field its 400 names before any admission (wantParam).
type reservationCase struct {
	name, path, body string
	want             int64
	wantParam        string
}

// checkReservations posts each case to g, whose Limiter is rec: a refused case must
// be a 400 naming its field (and saying wantMsg) with no admission, any other one a
// single admission reserving its output plus a few tokens for the prompt. No case
// may reach up.
func checkReservations(t *testing.T, g *gateway, rec *reservations, up *upstreamServer, wantMsg string, cases []reservationCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(rec.tokens)
			got := g.post(t, tc.path, tc.body)
			if tc.wantParam != "" {
				named := strings.Contains(got.body, `"param":"`+tc.wantParam+`"`) || // Anthropic's schema has no param: the message names it
					tc.path == messagesRoute && strings.Contains(got.body, `"message":"`+tc.wantParam+" ")
				if got.status != 400 || !named || !strings.Contains(got.body, wantMsg) || len(rec.tokens) != before {
					t.Fatalf("answer %d %s, want a 400 naming %s (saying %q) before admission", got.status, got.body, tc.wantParam, wantMsg)
				}
				return
			}
			if got.status != 429 || len(rec.tokens) != before+1 {
				t.Fatalf("answer %d %s with %d admissions, want one refused admission", got.status, got.body, len(rec.tokens)-before)
			}
			if out := rec.tokens[before]; out < tc.want || out > tc.want+20 {
				t.Fatalf("reserved %d tokens, want %d for the output plus a few for the prompt", out, tc.want)
			}
		})
	}
	if len(up.seen()) != 0 {
		t.Fatal("a refused request reached the upstream")
	}
}

// reservationPrompt is the conversation of the reservation cases.
const reservationPrompt = `"messages":[{"role":"user","content":"hi"}]`

// TestEveryChoiceIsReserved: a request for n completions reserves the output budget
// n times (best_of for legacy completions), and a choice count out of bounds is a
// 400 naming it.
func TestEveryChoiceIsReserved(t *testing.T) {
	rec := &reservations{}
	up := newUpstream(t, answerJSON(200, chatOK))
	g := newGatewayWith(t, func(o *Options) { o.Limiter = rec }, nil, deployment{name: "d1", kind: policy.ProviderOpenAI, model: "gpt", up: up})
	const prompt = reservationPrompt
	checkReservations(t, g, rec, up, "from 1 to 128", []reservationCase{
		{name: "n 8 × 1000", path: "/v1/chat/completions", body: `{"model":"gpt","n":8,"max_tokens":1000,` + prompt + `}`, want: 8000},
		{name: "no n", path: "/v1/chat/completions", body: `{"model":"gpt","max_tokens":1000,` + prompt + `}`, want: 1000},
		{name: "best_of 3", path: "/v1/completions", body: `{"model":"gpt","best_of":3,"n":2,"max_tokens":100,"prompt":"hi"}`, want: 300},
		{name: "n 0", path: "/v1/chat/completions", body: `{"model":"gpt","n":0,` + prompt + `}`, wantParam: "n"},
		{name: "n 129", path: "/v1/chat/completions", body: `{"model":"gpt","n":129,` + prompt + `}`, wantParam: "n"},
		{name: "best_of text", path: "/v1/completions", body: `{"model":"gpt","best_of":"2","prompt":"hi"}`, wantParam: "best_of"},
	})
}

// TestModelIsBoundedAndNotEchoedIntoLogs: a model name over MaxModelBytes is a 400,
// and one the policy does not have is logged as unknownModel, never verbatim.
func TestModelIsBoundedAndNotEchoedIntoLogs(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	up := newUpstream(t, answerJSON(200, chatOK))
	g := newGatewayWith(t, func(o *Options) {
		o.Log = slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	}, nil, deployment{name: "d1", kind: policy.ProviderOpenAI, model: "gpt", up: up})

	long := strings.Repeat("m", MaxModelBytes+1)
	if got := g.post(t, "/v1/chat/completions", `{"model":"`+long+`","messages":[]}`); got.status != 400 || !strings.Contains(got.body, `"param":"model"`) {
		t.Fatalf("a %d-byte model answered %d %s, want 400 naming model", len(long), got.status, got.body)
	}
	const made = "made-up-model-\u2028<script>"
	if got := g.post(t, "/v1/chat/completions", `{"model":"`+made+`","messages":[]}`); got.status != 403 {
		t.Fatalf("an unknown model answered %d %s, want 403", got.status, got.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "made-up-model") || strings.Contains(logs.String(), long) {
		t.Fatalf("the access log records the client's model verbatim:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), `"model":"`+unknownModel+`"`) {
		t.Fatalf("the access log does not say the model is unknown:\n%s", logs.String())
	}
}

// lockedWriter serializes writes to w: the handler logs from the server's goroutines.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
