package tracing

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A client's trace context, as a W3C traceparent.
const (
	clientTraceID     = "0af7651916cd43dd8448eb211c80319c"
	clientSpanID      = "b7ad6b7169203331"
	clientTraceparent = "00-" + clientTraceID + "-" + clientSpanID + "-01"
)

// newTestTracer is a Tracer over cfg that exports every span at once to the
// returned in-memory exporter.
func newTestTracer(t *testing.T, cfg Config) (*Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	sampler, res, err := setup(t.Context(), cfg, Options{WorkerID: "w1", Region: "eu"})
	if err != nil {
		t.Fatal(err)
	}
	tr := newTracer(cfg, sampler, res, sdktrace.NewSimpleSpanProcessor(exp))
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, exp
}

// TestOffUnlessAnEndpointIsSet: without an endpoint, or with one that the standard
// variables turn off, New returns no tracer, and starts no goroutine.
func TestOffUnlessAnEndpointIsSet(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{name: "nothing set", env: nil},
		{name: "only a protocol and a sampler", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "always_on"}},
		{name: "another program's sampler", env: map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}},
		{name: "the SDK disabled", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SDK_DISABLED": "true"}},
		{name: "no exporter", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces", "OTEL_TRACES_EXPORTER": "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			cfg := Default()
			cfg.ReadEnv(func(k string) string { return tt.env[k] })
			var p config.Problems
			cfg.Check(&p)
			if err := p.Err(); err != nil {
				t.Fatalf("Check: %v", err)
			}
			if cfg.Enabled() {
				t.Fatalf("Enabled with %v", tt.env)
			}
			tr, err := New(t.Context(), cfg, Options{})
			if err != nil || tr != nil {
				t.Fatalf("New = %v, %v; want no tracer", tr, err)
			}
			if err := tr.Shutdown(t.Context()); err != nil {
				t.Fatalf("Shutdown of no tracer: %v", err)
			}
		})
	}
}

// TestOffAllocatesNothing: with tracing off, everything the request path does
// with a span allocates nothing and returns the context it was given.
func TestOffAllocatesNothing(t *testing.T) {
	var tr *Tracer
	ctx := t.Context()
	h := http.Header{"Traceparent": {clientTraceparent}}
	allocs := testing.AllocsPerRun(1000, func() {
		got, span := tr.Start(ctx, "auth")
		if got != ctx {
			t.Fatal("Start returned another context")
		}
		span.SetString(ClientID, "c1")
		span.SetInt(Attempt, 1)
		span.SetBool(Stream, true)
		span.SetName("chat gpt")
		span.Fail("upstream_error")
		if span.Recording() || span.TraceID() != "" {
			t.Fatal("the zero span records")
		}
		span.End()
		_, server := tr.StartServer(ctx, "POST /v1/chat/completions", h)
		server.End()
		_, client := tr.StartClient(ctx, "attempt openai-eu")
		client.End()
		if tr.Propagates(policy.KindSelfHosted) {
			t.Fatal("a nil tracer propagates")
		}
		tr.Inject(ctx, h)
	})
	if allocs != 0 {
		t.Fatalf("tracing off allocates %v times per request", allocs)
	}
}

// TestReadEnv: the standard variables set the OTLP fields, the per-signal ones
// first, and traces go to the URL the specification says.
func TestReadEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    func(Config) bool
		wantURL string
	}{
		{name: "defaults", env: nil,
			want: func(c Config) bool { return c == Default() }},
		{name: "http base endpoint gets /v1/traces", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
			want: func(c Config) bool { return c.Enabled() && c.Protocol == ProtocolHTTP }, wantURL: "http://collector:4318/v1/traces"},
		{name: "http base endpoint with a path", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example.com/otlp/"},
			want: func(c Config) bool { return c.Enabled() }, wantURL: "https://otel.example.com/otlp/v1/traces"},
		{name: "traces endpoint used as it is, and wins",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:4318/custom"},
			want: func(c Config) bool { return c.Enabled() }, wantURL: "http://b:4318/custom"},
		{name: "grpc endpoint as it is",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			want: func(c Config) bool { return c.Protocol == ProtocolGRPC }, wantURL: "http://collector:4317"},
		{name: "the traces protocol wins",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			want: func(c Config) bool { return c.Protocol == ProtocolHTTP }},
		{name: "sampler and service",
			env: map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_SERVICE_NAME": "dp-eu"},
			want: func(c Config) bool {
				return c.Sampler == "parentbased_traceidratio" && c.SamplerArg == "0.25" && c.ServiceName == "dp-eu"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.ReadEnv(func(k string) string { return tt.env[k] })
			if !tt.want(c) {
				t.Fatalf("config = %+v", c)
			}
			if tt.wantURL != "" && c.tracesURL() != tt.wantURL {
				t.Fatalf("traces URL = %q, want %q", c.tracesURL(), tt.wantURL)
			}
		})
	}
}

// TestCheckNamesEveryProblem: each bad value is reported with its variable.
func TestCheckNamesEveryProblem(t *testing.T) {
	c := Config{
		Endpoint: "collector:4317", TracesEndpoint: "http://user:pw@collector:4318", Protocol: "http/json",
		Sampler: "traceidratio", SamplerArg: "2", ServiceName: " ", Exporter: "zipkin",
		ClientContext: "trust", Upstream: "cloud",
	}
	var p config.Problems
	c.Check(&p)
	err := p.Err()
	for _, want := range []string{
		`OTEL_EXPORTER_OTLP_ENDPOINT="collector:4317"`, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "must not carry credentials",
		`OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`, "OTEL_TRACES_SAMPLER", "from 0 to 1", "OTEL_SERVICE_NAME",
		`OTEL_TRACES_EXPORTER="zipkin"`, `PORTCULLIS_TRACE_CLIENT_CONTEXT="trust"`, `PORTCULLIS_TRACE_PROPAGATE_UPSTREAM="cloud"`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check does not report %s:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "pw") {
		t.Errorf("Check repeats the endpoint's password:\n%v", err)
	}
}

func TestSamplers(t *testing.T) {
	for _, name := range []string{"always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"} {
		if _, err := newSampler(name, ""); err != nil {
			t.Errorf("sampler %s: %v", name, err)
		}
	}
	for _, bad := range [][2]string{{"sometimes", ""}, {"traceidratio", "-0.1"}, {"parentbased_traceidratio", "half"}} {
		if _, err := newSampler(bad[0], bad[1]); err == nil {
			t.Errorf("sampler %s %q accepted", bad[0], bad[1])
		}
	}
}

// TestClientContext: an accepted client traceparent is the server span's parent;
// an ignored one starts a new trace, linked to the client's span.
func TestClientContext(t *testing.T) {
	tests := []struct {
		setting    string
		wantParent bool
	}{
		{setting: ClientAccept, wantParent: true},
		{setting: ClientIgnore, wantParent: false},
	}
	for _, tt := range tests {
		t.Run(tt.setting, func(t *testing.T) {
			cfg := Default()
			cfg.ClientContext = tt.setting
			tr, exp := newTestTracer(t, cfg)
			_, span := tr.StartServer(t.Context(), "POST /v1/chat/completions", http.Header{"Traceparent": {clientTraceparent}})
			span.End()
			spans := exp.GetSpans()
			if len(spans) != 1 {
				t.Fatalf("%d spans exported, want 1", len(spans))
			}
			s := spans[0]
			if s.SpanKind != trace.SpanKindServer {
				t.Fatalf("kind %v, want server", s.SpanKind)
			}
			fromClient := s.SpanContext.TraceID().String() == clientTraceID && s.Parent.SpanID().String() == clientSpanID
			if fromClient != tt.wantParent {
				t.Fatalf("trace %s parent %s: client's span as parent = %v, want %v",
					s.SpanContext.TraceID(), s.Parent.SpanID(), fromClient, tt.wantParent)
			}
			linked := len(s.Links) == 1 && s.Links[0].SpanContext.SpanID().String() == clientSpanID
			if linked == tt.wantParent {
				t.Fatalf("links %v: linked = %v with the client's span as parent = %v", s.Links, linked, tt.wantParent)
			}
		})
	}
}

// TestPropagates: which deployments get the trace context, by setting.
func TestPropagates(t *testing.T) {
	tests := []struct {
		setting           string
		cloud, selfHosted bool
	}{
		{setting: UpstreamNever},
		{setting: UpstreamSelfHosted, selfHosted: true},
		{setting: UpstreamAlways, cloud: true, selfHosted: true},
	}
	for _, tt := range tests {
		t.Run(tt.setting, func(t *testing.T) {
			cfg := Default()
			cfg.Upstream = tt.setting
			tr, _ := newTestTracer(t, cfg)
			if got := tr.Propagates(policy.KindCloud); got != tt.cloud {
				t.Errorf("cloud: %v, want %v", got, tt.cloud)
			}
			if got := tr.Propagates(policy.KindSelfHosted); got != tt.selfHosted {
				t.Errorf("self_hosted: %v, want %v", got, tt.selfHosted)
			}
		})
	}
}

// TestInjectWritesTheSpansContext: the upstream's traceparent names the span of
// the context it was sent in, within the client's trace.
func TestInjectWritesTheSpansContext(t *testing.T) {
	tr, _ := newTestTracer(t, Default())
	ctx, server := tr.StartServer(t.Context(), "POST /v1/chat/completions", http.Header{"Traceparent": {clientTraceparent}})
	ctx, attempt := tr.StartClient(ctx, "attempt ollama-eu")
	h := http.Header{}
	tr.Inject(ctx, h)
	attempt.End()
	server.End()
	want := "00-" + clientTraceID + "-" + attempt.s.SpanContext().SpanID().String() + "-01"
	if got := h.Get("Traceparent"); got != want {
		t.Fatalf("traceparent %q, want %q", got, want)
	}
}

// TestFailedExportsAreLoggedOnce: an exporter that keeps failing is reported once,
// and once more when it works again.
func TestFailedExportsAreLoggedOnce(t *testing.T) {
	logs := &logtest.Buffer{}
	exp := &flakyExporter{}
	r := &reportingExporter{SpanExporter: exp, log: slog.New(slog.NewJSONHandler(logs, nil))}
	exp.err = errors.New("connection refused")
	for range 3 {
		if err := r.ExportSpans(t.Context(), nil); err != nil {
			t.Fatalf("ExportSpans passed the failure on: %v", err)
		}
	}
	exp.err = nil
	_ = r.ExportSpans(t.Context(), nil)
	_ = r.ExportSpans(t.Context(), nil)
	out := logs.String()
	if n := strings.Count(out, "exporting traces failed"); n != 1 {
		t.Fatalf("failure logged %d times, want once:\n%s", n, out)
	}
	if n := strings.Count(out, "exporting traces works again"); n != 1 {
		t.Fatalf("recovery logged %d times, want once:\n%s", n, out)
	}
}

type flakyExporter struct{ err error }

func (e *flakyExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return e.err }
func (e *flakyExporter) Shutdown(context.Context) error                             { return nil }
