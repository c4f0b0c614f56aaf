package tracing

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/logging"
)

// Values of Config.Protocol (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Values of Config.ClientContext (PORTCULLIS_TRACE_CLIENT_CONTEXT).
const (
	// ClientAccept makes a client's traceparent the parent of its request's span.
	ClientAccept = "accept"
	// ClientIgnore starts a new trace for every request; the client's span becomes
	// a link of the request's span, not its parent.
	ClientIgnore = "ignore"
)

// Values of Config.Upstream (PORTCULLIS_TRACE_PROPAGATE_UPSTREAM).
const (
	UpstreamNever      = "never"
	UpstreamSelfHosted = "self_hosted" // only to deployments of kind self_hosted
	UpstreamAlways     = "always"
)

// Defaults of the settings that have one.
const (
	DefaultServiceName = "portcullis-dataplane"
	DefaultProtocol    = ProtocolHTTP // as the OpenTelemetry specification says
	DefaultSampler     = "parentbased_always_on"
	DefaultExporter    = "otlp"
)

// Keys of the two settings the data plane has a flag for; the others are the
// standard OTEL_* environment variables.
const (
	KeyClientContext = "trace-client-context"
	KeyUpstream      = "trace-propagate-upstream"
)

// Config says whether and how the data plane traces its requests. Tracing is on
// only when an OTLP endpoint is set (see Enabled). The OTLP fields come from the
// standard OpenTelemetry environment variables (see ReadEnv); the exporter reads
// the rest of its settings (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _CERTIFICATE,
// _COMPRESSION, …) from the environment itself, and the batch span processor its
// OTEL_BSP_* settings.
type Config struct {
	// Endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) is the collector's base URL: over
	// http/protobuf, traces go to its path plus /v1/traces.
	Endpoint string
	// TracesEndpoint (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is the URL traces go to,
	// used as it is; it wins over Endpoint.
	TracesEndpoint string
	// Protocol (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
	// OTEL_EXPORTER_OTLP_PROTOCOL) is grpc or http/protobuf.
	Protocol string
	// Sampler and SamplerArg (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG) decide
	// which traces are kept: always_on, always_off, traceidratio, or parentbased_
	// with one of those (the default, parentbased_always_on, keeps a trace when its
	// parent was sampled, and every trace that starts here).
	Sampler    string
	SamplerArg string
	// ServiceName (OTEL_SERVICE_NAME) is the service.name of the spans.
	ServiceName string
	// Exporter (OTEL_TRACES_EXPORTER) is otlp, or none to turn tracing off.
	Exporter string
	// SDKDisabled (OTEL_SDK_DISABLED=true) turns tracing off.
	SDKDisabled bool

	// ClientContext (PORTCULLIS_TRACE_CLIENT_CONTEXT) says what a client's
	// traceparent and tracestate headers do: accept (the default) makes them the
	// parent of the request's span, ignore starts a new trace linked to them.
	ClientContext string
	// Upstream (PORTCULLIS_TRACE_PROPAGATE_UPSTREAM) says which upstream requests
	// carry the attempt's traceparent: never, self_hosted (the default: only
	// deployments of kind self_hosted, whose operators are the gateway's own) or
	// always (cloud providers too).
	Upstream string
}

// Default is the configuration with every default set: off, since no endpoint is.
func Default() Config {
	return Config{
		Protocol:      DefaultProtocol,
		Sampler:       DefaultSampler,
		ServiceName:   DefaultServiceName,
		Exporter:      DefaultExporter,
		ClientContext: ClientAccept,
		Upstream:      UpstreamSelfHosted,
	}
}

// ReadEnv sets the OTLP fields from the standard OpenTelemetry variables that
// getenv has; the fields of the variables it does not have stay as they are.
func (c *Config) ReadEnv(getenv func(string) string) {
	set := func(p *string, name string) {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			*p = v
		}
	}
	set(&c.Endpoint, "OTEL_EXPORTER_OTLP_ENDPOINT")
	set(&c.TracesEndpoint, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	set(&c.Protocol, "OTEL_EXPORTER_OTLP_PROTOCOL")
	set(&c.Protocol, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	set(&c.Sampler, "OTEL_TRACES_SAMPLER")
	set(&c.SamplerArg, "OTEL_TRACES_SAMPLER_ARG")
	set(&c.ServiceName, "OTEL_SERVICE_NAME")
	set(&c.Exporter, "OTEL_TRACES_EXPORTER")
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		c.SDKDisabled = true
	}
}

// Enabled reports whether requests are traced: an OTLP endpoint is set, and
// neither OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER=none turns tracing off.
func (c Config) Enabled() bool {
	return (c.Endpoint != "" || c.TracesEndpoint != "") && !c.SDKDisabled && c.Exporter != "none"
}

// Check adds every problem of c to p, naming the variable of each. The OTEL_*
// variables are checked only when they turn tracing on: other programs of the same
// environment may read them with values this worker does not know.
func (c Config) Check(p *config.Problems) {
	switch c.ClientContext {
	case ClientAccept, ClientIgnore:
	default:
		p.Add(KeyClientContext, c.ClientContext, "must be accept or ignore")
	}
	switch c.Upstream {
	case UpstreamNever, UpstreamSelfHosted, UpstreamAlways:
	default:
		p.Add(KeyUpstream, c.Upstream, "must be never, self_hosted or always")
	}
	if !c.Enabled() {
		return
	}
	if c.Endpoint != "" {
		if reason := checkEndpoint(c.Endpoint); reason != "" {
			p.AddEnv("OTEL_EXPORTER_OTLP_ENDPOINT", logging.RedactURL(c.Endpoint), reason)
		}
	}
	if c.TracesEndpoint != "" {
		if reason := checkEndpoint(c.TracesEndpoint); reason != "" {
			p.AddEnv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", logging.RedactURL(c.TracesEndpoint), reason)
		}
	}
	switch c.Protocol {
	case ProtocolGRPC, ProtocolHTTP:
	default:
		p.AddEnv("OTEL_EXPORTER_OTLP_PROTOCOL", c.Protocol, "must be grpc or http/protobuf (http/json is not supported)")
	}
	if _, err := newSampler(c.Sampler, c.SamplerArg); err != nil {
		p.AddEnv("OTEL_TRACES_SAMPLER", c.Sampler+" "+c.SamplerArg, err.Error())
	}
	if strings.TrimSpace(c.ServiceName) == "" {
		p.AddEnv("OTEL_SERVICE_NAME", c.ServiceName, "must not be empty")
	}
	switch c.Exporter {
	case "otlp", "none":
	default:
		p.AddEnv("OTEL_TRACES_EXPORTER", c.Exporter, "must be otlp or none")
	}
}

// checkEndpoint is why endpoint is no usable OTLP endpoint URL, "" when it is.
func checkEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "must be an http:// or https:// URL, e.g. http://otel-collector:4318 (http/protobuf) or http://otel-collector:4317 (grpc)"
	}
	if u.User != nil {
		return "must not carry credentials: put them in OTEL_EXPORTER_OTLP_HEADERS"
	}
	return ""
}

// tracesURL is the URL the exporter sends traces to: TracesEndpoint as it is, else
// Endpoint, with /v1/traces appended to its path over http/protobuf.
func (c Config) tracesURL() string {
	if c.TracesEndpoint != "" {
		return c.TracesEndpoint
	}
	if c.Protocol == ProtocolGRPC {
		return c.Endpoint
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return c.Endpoint // Check refuses it first
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	return u.String()
}

// samplerRatio parses the argument of a traceidratio sampler: a number from 0 to
// 1, 1 when empty.
func samplerRatio(arg string) (float64, bool) {
	if arg == "" {
		return 1, true
	}
	r, err := strconv.ParseFloat(arg, 64)
	return r, err == nil && r >= 0 && r <= 1
}
