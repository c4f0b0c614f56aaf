package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// newExporter returns the OTLP exporter of cfg's protocol, sending to its traces
// URL. The exporter reads its other settings (headers, timeout, TLS files,
// compression) from the OTEL_EXPORTER_OTLP_* environment variables itself; an
// http:// URL means no TLS.
func newExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	endpoint := cfg.tracesURL()
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch cfg.Protocol {
	case ProtocolGRPC:
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(endpoint))
	case ProtocolHTTP:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	default:
		return nil, fmt.Errorf("tracing: OTLP protocol %q: must be grpc or http/protobuf", cfg.Protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP %s exporter for %s: %w", cfg.Protocol, endpoint, err)
	}
	return exp, nil
}

// newSampler returns the sampler OTEL_TRACES_SAMPLER names, with its argument for
// the ratio samplers (a fraction from 0 to 1, default 1).
func newSampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (sdktrace.Sampler, error) {
		r, ok := samplerRatio(arg)
		if !ok {
			return nil, fmt.Errorf("sampler argument %q must be a number from 0 to 1", arg)
		}
		return sdktrace.TraceIDRatioBased(r), nil
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		return ratio()
	case "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "parentbased_traceidratio":
		root, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(root), nil
	}
	return nil, fmt.Errorf("sampler %q: must be always_on, always_off, traceidratio, parentbased_always_on, "+
		"parentbased_always_off or parentbased_traceidratio", name)
}

// reportingExporter reports the exporter's failures on the worker's log, once when
// exports start failing and once when they work again, instead of passing them to
// the OpenTelemetry SDK's global error handler (the standard log package, once per
// batch). Spans of a failed export are dropped: tracing never holds requests up.
type reportingExporter struct {
	sdktrace.SpanExporter
	log     *slog.Logger
	failing atomic.Bool
}

func (e *reportingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		if !e.failing.Swap(true) {
			e.log.Warn("exporting traces failed; spans are dropped until the collector takes them again", "spans", len(spans), "err", err)
		}
		return nil
	}
	if e.failing.Swap(false) {
		e.log.Info("exporting traces works again")
	}
	return nil
}
