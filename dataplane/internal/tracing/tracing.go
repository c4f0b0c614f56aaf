// Package tracing traces the data plane's requests with OpenTelemetry and exports
// the spans over OTLP (gRPC or HTTP), when an endpoint is configured (see Config).
//
// It is a thin layer over the OpenTelemetry SDK, made for the request path: a nil
// *Tracer is tracing turned off, and then Start returns its context unchanged and
// a zero Span, whose methods do nothing, without allocating. So the request path
// pays a nil check per span when tracing is off, and no exporter, goroutine or
// OpenTelemetry global exists. The spans and their attributes are described in
// docs/tracing.md; attribute keys follow OpenTelemetry's gen_ai and HTTP semantic
// conventions, plus Portcullis' own under portcullis.*.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// instrumentation is the name of the tracer, the instrumentation scope of its spans.
const instrumentation = "github.com/portcullis-gw/portcullis/dataplane"

// Tracer starts the spans of the data plane's requests, reads a client's trace
// context and writes the attempt's into upstream requests. A nil *Tracer is
// tracing turned off: every method is then a no-op. Safe for concurrent use.
type Tracer struct {
	provider  *sdktrace.TracerProvider
	processor sdktrace.SpanProcessor // the provider's only one
	tracer    trace.Tracer
	// w3c reads and writes traceparent and tracestate.
	w3c propagation.TraceContext
	// acceptClient: a client's trace context is the parent of its request's span.
	acceptClient bool
	upstream     string // which upstream requests carry the trace context (Upstream*)
}

// Options are what New needs besides the Config.
type Options struct {
	WorkerID string // service.instance.id
	Region   string // portcullis.region of the resource
	Log      *slog.Logger
}

// New returns the worker's tracer with an OTLP exporter sending to cfg's endpoint
// through a batch span processor, or nil (tracing off) when cfg is not Enabled.
// cfg must have passed Check. The caller owns the tracer and must Shutdown it,
// which flushes the spans not yet exported and ends the processor's goroutine.
func New(ctx context.Context, cfg Config, o Options) (*Tracer, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	sampler, res, err := setup(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	exp, err := newExporter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	exporting := sdktrace.NewBatchSpanProcessor(&reportingExporter{SpanExporter: exp, log: o.Log})
	o.Log.Info("tracing requests", "endpoint", logging.RedactURL(cfg.tracesURL()), "protocol", cfg.Protocol,
		"sampler", cfg.Sampler, "client_context", cfg.ClientContext, "propagate_upstream", cfg.Upstream)
	return newTracer(cfg, sampler, res, exporting), nil
}

// setup returns the sampler cfg names and the resource of the worker's spans:
// OTEL_RESOURCE_ATTRIBUTES, the SDK's own, the service name, the worker and its
// region.
func setup(ctx context.Context, cfg Config, o Options) (sdktrace.Sampler, *resource.Resource, error) {
	sampler, err := newSampler(cfg.Sampler, cfg.SamplerArg)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(
			attribute.String("service.name", cfg.ServiceName),
			attribute.String("service.instance.id", o.WorkerID),
			Region.String(o.Region),
		),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return sampler, res, nil
}

// newTracer builds a Tracer whose spans go to processor.
func newTracer(cfg Config, sampler sdktrace.Sampler, res *resource.Resource, processor sdktrace.SpanProcessor) *Tracer {
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(processor),
		sdktrace.WithSampler(sampler),
		sdktrace.WithResource(res),
	)
	return &Tracer{
		provider:     provider,
		processor:    processor,
		tracer:       provider.Tracer(instrumentation),
		acceptClient: cfg.ClientContext != ClientIgnore,
		upstream:     cfg.Upstream,
	}
}

// Shutdown ends the tracer: it exports the spans not yet exported, within ctx,
// and stops the exporter. The span processor is told to stop even when ctx has
// already ended (the provider would skip it then), so that its goroutine ends
// after one last export. It is a no-op on a nil Tracer, and after the first call.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	err := t.processor.Shutdown(ctx)
	if perr := t.provider.Shutdown(ctx); err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

// Start starts an internal span named name, a child of ctx's span. With tracing
// off it returns ctx and the zero Span, and allocates nothing.
func (t *Tracer) Start(ctx context.Context, name string) (context.Context, Span) {
	if t == nil {
		return ctx, Span{}
	}
	ctx, s := t.tracer.Start(ctx, name)
	return ctx, Span{s: s}
}

// StartClient starts a client span named name (a call the gateway makes), a child
// of ctx's span. With tracing off it returns ctx and the zero Span.
func (t *Tracer) StartClient(ctx context.Context, name string) (context.Context, Span) {
	if t == nil {
		return ctx, Span{}
	}
	ctx, s := t.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	return ctx, Span{s: s}
}

// StartServer starts the server span of a request named name, whose headers are h.
// The client's traceparent (and tracestate) in h is the span's parent when the
// client context is accepted, else a link of a span that starts a new trace. With
// tracing off it returns ctx and the zero Span.
func (t *Tracer) StartServer(ctx context.Context, name string, h http.Header) (context.Context, Span) {
	if t == nil {
		return ctx, Span{}
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	if t.acceptClient {
		ctx = t.w3c.Extract(ctx, propagation.HeaderCarrier(h))
	} else if remote := trace.SpanContextFromContext(t.w3c.Extract(ctx, propagation.HeaderCarrier(h))); remote.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: remote}))
	}
	ctx, s := t.tracer.Start(ctx, name, opts...)
	return ctx, Span{s: s}
}

// Propagates reports whether upstream requests to a deployment of kind (cloud or
// self_hosted) carry the trace context; never with tracing off.
func (t *Tracer) Propagates(kind string) bool {
	if t == nil {
		return false
	}
	switch t.upstream {
	case UpstreamAlways:
		return true
	case UpstreamSelfHosted:
		return kind == policy.KindSelfHosted
	}
	return false
}

// Inject writes the trace context of ctx's span into h, an upstream request's
// headers: traceparent, and tracestate when there is one.
func (t *Tracer) Inject(ctx context.Context, h http.Header) {
	if t == nil {
		return
	}
	t.w3c.Inject(ctx, propagation.HeaderCarrier(h))
}

// Span is one span of a request, or nothing: the zero Span (tracing off) does
// nothing, at the cost of a nil check per call. A Span is used by one goroutine.
type Span struct{ s trace.Span }

// Recording reports whether the span records what it is told: false for the zero
// Span and for a span its trace's sampler dropped. Callers check it before working
// out attributes.
func (s Span) Recording() bool { return s.s != nil && s.s.IsRecording() }

// TraceID is the span's trace id in hex when its trace is sampled (exported), for
// log lines to point at; "" otherwise, and for the zero Span.
func (s Span) TraceID() string {
	if s.s == nil {
		return ""
	}
	if sc := s.s.SpanContext(); sc.IsSampled() && sc.TraceID().IsValid() {
		return sc.TraceID().String()
	}
	return ""
}

// SetName renames the span, once what it did is known.
func (s Span) SetName(name string) {
	if s.s != nil {
		s.s.SetName(name)
	}
}

// SetString sets the attribute k to v, unless v is empty.
func (s Span) SetString(k attribute.Key, v string) {
	if s.s != nil && v != "" {
		s.s.SetAttributes(k.String(v))
	}
}

// SetInt sets the attribute k to v.
func (s Span) SetInt(k attribute.Key, v int64) {
	if s.s != nil {
		s.s.SetAttributes(k.Int64(v))
	}
}

// SetBool sets the attribute k to v.
func (s Span) SetBool(k attribute.Key, v bool) {
	if s.s != nil {
		s.s.SetAttributes(k.Bool(v))
	}
}

// Fail marks the span failed with errorType, a stable error code such as
// upstream_timeout: its error.type attribute and its status. The error's message
// is not recorded, since it may say more than a trace should carry.
func (s Span) Fail(errorType string) {
	if s.s != nil {
		s.s.SetAttributes(ErrorType.String(errorType))
		s.s.SetStatus(codes.Error, errorType)
	}
}

// End ends the span.
func (s Span) End() {
	if s.s != nil {
		s.s.End()
	}
}
