package app_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/dataplane/internal/tracing"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// otlpReceiver is an in-process OpenTelemetry collector: it takes OTLP trace
// exports, over HTTP (protobuf) or gRPC, and keeps their spans.
type otlpReceiver struct {
	endpoint string // the collector's OTEL_EXPORTER_OTLP_ENDPOINT

	mu         sync.Mutex
	spans      []*tracepb.Span
	attributes []*commonpb.KeyValue // of the resources the spans came with
}

// newOTLPReceiver starts a receiver for protocol (tracing.ProtocolHTTP or
// tracing.ProtocolGRPC) on a loopback port; it stops with the test.
func newOTLPReceiver(t testing.TB, protocol string) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	switch protocol {
	case tracing.ProtocolHTTP:
		srv := httptest.NewServer(http.HandlerFunc(r.serveHTTP))
		t.Cleanup(srv.Close)
		r.endpoint = srv.URL
	case tracing.ProtocolGRPC:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(srv, grpcTraces{r: r})
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = srv.Serve(ln)
		}()
		t.Cleanup(func() {
			srv.Stop()
			<-done
		})
		r.endpoint = "http://" + ln.Addr().String()
	default:
		t.Fatalf("no receiver for protocol %q", protocol)
	}
	return r
}

// serveHTTP is OTLP/HTTP's POST /v1/traces, in protobuf.
func (r *otlpReceiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces in application/x-protobuf", http.StatusBadRequest)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	var export coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(raw, &export)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.take(&export)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// grpcTraces is OTLP/gRPC's trace service.
type grpcTraces struct {
	coltracepb.UnimplementedTraceServiceServer
	r *otlpReceiver
}

func (g grpcTraces) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	g.r.take(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) take(export *coltracepb.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.GetResourceSpans() {
		r.attributes = append(r.attributes, rs.GetResource().GetAttributes()...)
		for _, ss := range rs.GetScopeSpans() {
			r.spans = append(r.spans, ss.GetSpans()...)
		}
	}
}

// received returns the spans received so far and their resources' attributes.
func (r *otlpReceiver) received() ([]*tracepb.Span, map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.spans), attributes(r.attributes)
}

// attributes decodes OTLP key-values into their Go values.
func attributes(kvs []*commonpb.KeyValue) map[string]any {
	out := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			out[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			out[kv.GetKey()] = v.IntValue
		case *commonpb.AnyValue_BoolValue:
			out[kv.GetKey()] = v.BoolValue
		case *commonpb.AnyValue_DoubleValue:
			out[kv.GetKey()] = v.DoubleValue
		default:
			out[kv.GetKey()] = kv.GetValue().String()
		}
	}
	return out
}

// traceEnv is an env whose worker traces to an in-process collector, and whose
// gpt-4o-mini fails on openai-eu (a cloud deployment taking 2 attempts, each
// answering 500) and falls back to llama3-8b on ollama-eu (self-hosted), which
// answers. Both upstreams record the traceparent they are sent.
type traceEnv struct {
	*env
	rcv *otlpReceiver

	mu          sync.Mutex
	traceparent map[string][]string // by deployment, one per call ("" for none)
}

// The request every traceEnv test sends, and the answer and usage of ollama-eu.
const (
	tracedPrompt = "a prompt that must stay out of the traces"
	tracedAnswer = "an answer that must stay out of the traces"
	tracedBody   = `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + tracedPrompt + `"}]}`
)

func newTraceEnv(t *testing.T, protocol string, configure func(*tracing.Config)) *traceEnv {
	t.Helper()
	rcv := newOTLPReceiver(t, protocol)
	e := &traceEnv{rcv: rcv, traceparent: map[string][]string{}}
	e.env = newEnv(t, envOptions{configure: func(c *app.Config) {
		c.Tracing.Endpoint, c.Tracing.Protocol = rcv.endpoint, protocol
		if configure != nil {
			configure(&c.Tracing)
		}
	}})
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		e.record("openai-eu", r)
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
	})
	ollama := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.record("ollama-eu", r)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"x","object":"chat.completion","model":"llama3:8b","choices":[{"index":0,"message":{"role":"assistant","content":"`+
			tracedAnswer+`"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}`)
	}))
	t.Cleanup(ollama.Close)

	s := e.snapshot()
	s.Providers = append(s.Providers, policy.Provider{Name: "ollama", Kind: policy.ProviderOllama})
	s.Deployments = append(s.Deployments, policy.Deployment{Name: "ollama-eu", Provider: "ollama", Region: "eu",
		Kind: policy.KindSelfHosted, BaseURL: ollama.URL, KeySource: policy.KeySourceNone, TLS: policy.TLS{Verify: true},
		TimeoutSeconds: 5, Enabled: true, Retry: policy.Retry{MaxAttempts: 1}})
	s.Models = append(s.Models, policy.Model{ID: "llama3-8b@ollama-eu", Name: "llama3-8b", Deployment: "ollama-eu", UpstreamModel: "llama3:8b"})
	s.FallbackMaps = []policy.FallbackMap{{ID: "f1", Provider: "openai", FromModel: "gpt-4o-mini", ToModel: "llama3-8b"}}
	for i := range s.Deployments {
		if s.Deployments[i].Name == "openai-eu" {
			s.Deployments[i].Retry = policy.Retry{MaxAttempts: 2, Backoff: "constant"}
			s.Deployments[i].CircuitBreaker = policy.CircuitBreaker{FailureThreshold: 100, ResetTimeoutSeconds: 60}
		}
	}
	e.publish(t, s)
	return e
}

func (e *traceEnv) record(deployment string, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.traceparent[deployment] = append(e.traceparent[deployment], r.Header.Get("Traceparent"))
}

func (e *traceEnv) traceparents(deployment string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.traceparent[deployment])
}

// send sends the test's request as eu-app, with headers, checks that it was
// answered by the fallback, and returns its request id.
func (e *traceEnv) send(t *testing.T, headers map[string]string) string {
	t.Helper()
	resp := e.do(t, http.MethodPost, "/v1/chat/completions", e.token(t, "eu-app"), tracedBody, headers)
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Portcullis-Fallback") != "llama3-8b" || !strings.Contains(string(raw), tracedAnswer) {
		t.Fatalf("status %d fallback %q: %s", resp.StatusCode, resp.Header.Get("X-Portcullis-Fallback"), raw)
	}
	return resp.Header.Get("X-Request-Id")
}

// stop stops the worker, which flushes its spans, and returns the spans the
// collector received and their resource's attributes.
func (e *traceEnv) stop(t *testing.T) ([]*tracepb.Span, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.app.Stop(ctx); err != nil {
		t.Fatalf("stop data plane: %v", err)
	}
	return e.rcv.received()
}

// requestTree returns the server span of the one traced request in spans and its
// children, in the order they started.
func requestTree(t *testing.T, spans []*tracepb.Span) (*tracepb.Span, []*tracepb.Span) {
	t.Helper()
	var server *tracepb.Span
	for _, s := range spans {
		if s.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
			if server != nil {
				t.Fatalf("two server spans: %q and %q", server.GetName(), s.GetName())
			}
			server = s
		}
	}
	if server == nil {
		t.Fatalf("no server span among %d spans: %v", len(spans), names(spans))
	}
	var children []*tracepb.Span
	for _, s := range spans {
		if bytes.Equal(s.GetParentSpanId(), server.GetSpanId()) {
			if !bytes.Equal(s.GetTraceId(), server.GetTraceId()) {
				t.Fatalf("span %q is in another trace than its parent", s.GetName())
			}
			children = append(children, s)
		}
	}
	slices.SortFunc(children, func(a, b *tracepb.Span) int {
		return int(int64(a.GetStartTimeUnixNano()) - int64(b.GetStartTimeUnixNano()))
	})
	if len(spans) != len(children)+1 {
		t.Fatalf("%d spans, of which %d are the server span's children: %v", len(spans), len(children), names(spans))
	}
	return server, children
}

func names(spans []*tracepb.Span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.GetName()
	}
	return out
}

// wantAttributes checks that span has each of want (an int64 for an integer),
// and none of the keys whose value is nil.
func wantAttributes(t *testing.T, span *tracepb.Span, want map[string]any) {
	t.Helper()
	got := attributes(span.GetAttributes())
	for k, v := range want {
		if g, ok := got[k]; v == nil && ok {
			t.Errorf("span %q has %s=%v, want none", span.GetName(), k, g)
		} else if v != nil && g != v {
			t.Errorf("span %q: %s=%v (%T), want %v (%T)", span.GetName(), k, g, g, v, v)
		}
	}
}

// TestTracingSpanTreeOfARetriedFallback: one request that fails twice on its
// primary deployment (an attempt and a retry) and then falls back is one trace,
// exported over each OTLP protocol: the server span, and under it auth, limits,
// routing, the three attempts and the relay, with the gen_ai attributes. No span
// carries the prompt, the answer, the client's token or the upstream key.
func TestTracingSpanTreeOfARetriedFallback(t *testing.T) {
	for _, protocol := range []string{tracing.ProtocolHTTP, tracing.ProtocolGRPC} {
		t.Run(protocol, func(t *testing.T) {
			e := newTraceEnv(t, protocol, nil)
			token := e.token(t, "eu-app")
			requestID := e.send(t, nil)
			spans, resource := e.stop(t)

			server, children := requestTree(t, spans)
			wantNames := []string{"auth", "limits", "routing", "attempt openai-eu", "attempt openai-eu", "attempt ollama-eu", "relay"}
			if got := names(children); !slices.Equal(got, wantNames) {
				t.Fatalf("the server span's children are %v, want %v", got, wantNames)
			}
			if server.GetName() != "chat gpt-4o-mini" || len(server.GetParentSpanId()) != 0 {
				t.Fatalf("server span %q with parent %x, want a root named \"chat gpt-4o-mini\"", server.GetName(), server.GetParentSpanId())
			}
			wantAttributes(t, server, map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "llama3:8b",
				"gen_ai.system": policy.ProviderOllama, "gen_ai.usage.input_tokens": int64(7), "gen_ai.usage.output_tokens": int64(2),
				"http.request.method": "POST", "http.route": "/v1/chat/completions", "http.response.status_code": int64(200),
				"portcullis.client_id": "eu-app", "portcullis.tenant": "demo", "portcullis.region": "eu",
				"portcullis.deployment": "ollama-eu", "portcullis.fallback": "llama3-8b", "portcullis.fallback_reason": "upstream_error",
				"portcullis.request_id": requestID, "error.type": nil,
			})
			attempts := children[3:6]
			for i, want := range []map[string]any{
				{"portcullis.attempt": int64(1), "portcullis.deployment": "openai-eu", "gen_ai.system": policy.ProviderOpenAI,
					"gen_ai.request.model": "gpt-4o-mini-2024-07-18", "http.response.status_code": int64(500), "error.type": "upstream_error",
					"portcullis.fallback_reason": nil},
				{"portcullis.attempt": int64(2), "portcullis.deployment": "openai-eu", "http.response.status_code": int64(500),
					"error.type": "upstream_error", "portcullis.fallback_reason": nil},
				{"portcullis.attempt": int64(3), "portcullis.deployment": "ollama-eu", "gen_ai.system": policy.ProviderOllama,
					"gen_ai.request.model": "llama3:8b", "gen_ai.operation.name": "chat", "http.response.status_code": int64(200),
					"portcullis.fallback_reason": "upstream_error", "error.type": nil},
			} {
				a := attempts[i]
				if a.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
					t.Errorf("attempt %d is of kind %v, want client", i+1, a.GetKind())
				}
				failed := a.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR
				if failed != (i < 2) {
					t.Errorf("attempt %d: status %v", i+1, a.GetStatus())
				}
				wantAttributes(t, a, want)
			}
			wantAttributes(t, children[6], map[string]any{"portcullis.attempt": int64(3), "portcullis.deployment": "ollama-eu",
				"portcullis.stream": false, "error.type": nil})
			if resource["service.name"] != tracing.DefaultServiceName || resource["service.instance.id"] != "test-eu" {
				t.Errorf("resource %v, want service.name %s of worker test-eu", resource, tracing.DefaultServiceName)
			}
			if line := accessLine(t, e.logs, requestID); line["trace_id"] != hex.EncodeToString(server.GetTraceId()) {
				t.Errorf("access log trace_id %v, want the request's trace %x", line["trace_id"], server.GetTraceId())
			}

			for _, s := range spans {
				for k, v := range attributes(s.GetAttributes()) {
					text := fmt.Sprint(v)
					for _, secret := range []string{tracedPrompt, tracedAnswer, token, upstreamKey} {
						if strings.Contains(text, secret) {
							t.Errorf("span %q attribute %s carries %q", s.GetName(), k, secret)
						}
					}
				}
			}
		})
	}
}

// TestTracingPropagation: a client's traceparent is the parent of its request's
// span (unless the setting ignores it: then it is a link), and the attempt's trace
// context reaches the upstreams the setting names: self-hosted ones by default,
// cloud ones only with "always".
func TestTracingPropagation(t *testing.T) {
	const (
		clientTraceID = "0af7651916cd43dd8448eb211c80319c"
		clientSpanID  = "b7ad6b7169203331"
	)
	tests := []struct {
		name             string
		clientContext    string // "": the default
		upstream         string // "": the default
		wantClientParent bool
		wantCloud        bool // openai-eu gets a traceparent
		wantSelfHosted   bool // ollama-eu does
	}{
		{name: "defaults", wantClientParent: true, wantSelfHosted: true},
		{name: "never upstream", upstream: tracing.UpstreamNever, wantClientParent: true},
		{name: "always upstream", upstream: tracing.UpstreamAlways, wantClientParent: true, wantCloud: true, wantSelfHosted: true},
		{name: "client context ignored", clientContext: tracing.ClientIgnore, wantSelfHosted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTraceEnv(t, tracing.ProtocolHTTP, func(c *tracing.Config) {
				c.ClientContext, c.Upstream = tt.clientContext, tt.upstream
			})
			e.send(t, map[string]string{"traceparent": "00-" + clientTraceID + "-" + clientSpanID + "-01", "tracestate": "vendor=1"})
			spans, _ := e.stop(t)
			server, children := requestTree(t, spans)

			traceID := hex.EncodeToString(server.GetTraceId())
			fromClient := traceID == clientTraceID && hex.EncodeToString(server.GetParentSpanId()) == clientSpanID
			if fromClient != tt.wantClientParent {
				t.Fatalf("server span in trace %s with parent %x: the client's span is its parent = %v, want %v",
					traceID, server.GetParentSpanId(), fromClient, tt.wantClientParent)
			}
			links := server.GetLinks()
			linked := len(links) == 1 && hex.EncodeToString(links[0].GetSpanId()) == clientSpanID
			if linked == tt.wantClientParent {
				t.Fatalf("server span links %v: linked to the client's span = %v, parent = %v", links, linked, fromClient)
			}

			for _, c := range []struct {
				deployment string
				attempts   []*tracepb.Span
				want       bool
			}{
				{deployment: "openai-eu", attempts: children[3:5], want: tt.wantCloud},
				{deployment: "ollama-eu", attempts: children[5:6], want: tt.wantSelfHosted},
			} {
				got := e.traceparents(c.deployment)
				if len(got) != len(c.attempts) {
					t.Fatalf("%s was called %d times, want %d", c.deployment, len(got), len(c.attempts))
				}
				for i, tp := range got {
					want := ""
					if c.want { // the attempt's own span, in the request's trace
						want = "00-" + traceID + "-" + hex.EncodeToString(c.attempts[i].GetSpanId()) + "-01"
					}
					if tp != want {
						t.Errorf("%s call %d got traceparent %q, want %q", c.deployment, i+1, tp, want)
					}
				}
			}
		})
	}
}

// TestTracingOffWithoutAnEndpoint: a worker configured without an OTLP endpoint
// traces nothing: it says nothing about tracing at start, its access log lines
// carry no trace id, and a client's traceparent goes no further, to no upstream.
func TestTracingOffWithoutAnEndpoint(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(c *app.Config) { c.Tracing.Upstream = tracing.UpstreamAlways }})
	var got []string
	var mu sync.Mutex
	e.spies["eu"].handle(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Traceparent"))
		mu.Unlock()
		writeJSON(w, map[string]any{"id": "c1", "object": "chat.completion", "choices": []any{}})
	})
	resp := e.do(t, http.MethodPost, "/v1/chat/completions", e.token(t, "eu-app"), tracedBody,
		map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	line := accessLine(t, e.logs, resp.Header.Get("X-Request-Id"))
	if _, ok := line["trace_id"]; ok {
		t.Errorf("access log line has a trace_id without tracing: %v", line)
	}
	if strings.Contains(e.logs.String(), "tracing requests") {
		t.Error("the worker says it traces requests without an endpoint")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "" {
		t.Fatalf("the upstream got traceparents %q, want one call without", got)
	}
}

// TestLoadConfigTracingKeys: tracing is off by default; the standard OTEL_*
// variables turn it on and set the exporter, PORTCULLIS_TRACE_* (or their flags)
// the propagation; bad values are errors naming their variable.
func TestLoadConfigTracingKeys(t *testing.T) {
	cfg, err := app.LoadConfig(nil, getenv(required), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.Tracing != tracing.Default() || cfg.Tracing.Enabled() || cfg.Tracing.ClientContext != tracing.ClientAccept ||
		cfg.Tracing.Upstream != tracing.UpstreamSelfHosted || cfg.Tracing.ServiceName != "portcullis-dataplane" {
		t.Fatalf("default tracing config %+v", cfg.Tracing)
	}

	cfg, err = app.LoadConfig([]string{"-trace-client-context", "ignore"}, getenv(with(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1", "OTEL_SERVICE_NAME": "dp-eu",
		"PORTCULLIS_TRACE_PROPAGATE_UPSTREAM": "always", "PORTCULLIS_TRACE_CLIENT_CONTEXT": "accept",
	})), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := tracing.Config{Endpoint: "http://otel-collector:4317", Protocol: tracing.ProtocolGRPC, Sampler: "parentbased_traceidratio",
		SamplerArg: "0.1", ServiceName: "dp-eu", Exporter: "otlp", ClientContext: tracing.ClientIgnore, Upstream: tracing.UpstreamAlways}
	if cfg.Tracing != want || !cfg.Tracing.Enabled() {
		t.Fatalf("tracing config %+v, want %+v", cfg.Tracing, want)
	}

	_, err = app.LoadConfig(nil, getenv(with(map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "otel-collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
		"PORTCULLIS_TRACE_PROPAGATE_UPSTREAM": "cloud",
	})), io.Discard)
	for _, want := range []string{`OTEL_EXPORTER_OTLP_ENDPOINT="otel-collector:4317"`, `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`,
		`PORTCULLIS_TRACE_PROPAGATE_UPSTREAM="cloud"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig error does not report %s: %v", want, err)
		}
	}
}
