// Package upstream calls one deployment's OpenAI-compatible API: it owns the
// deployment's HTTP client and transport (TLS policy, response-header timeout), asks
// the deployment's key source for the key, and classifies transport failures into
// stable error codes. It also splits server-sent event streams (see EventReader).
//
// Retries, breakers and fallback arrive with the resilience issue; they wrap Send.
package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis-gw/portcullis/dataplane/internal/keys"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Paths of the OpenAI-compatible API, relative to a deployment's base URL.
const (
	PathChatCompletions = "/v1/chat/completions"
	PathCompletions     = "/v1/completions"
	PathEmbeddings      = "/v1/embeddings"
	// PathMessages is Anthropic's Messages API.
	PathMessages = "/v1/messages"
)

// AnthropicVersion is the anthropic-version header the gateway sends to Anthropic
// deployments.
const AnthropicVersion = "2023-06-01"

// Defaults of a deployment's timeouts, used when its policy leaves them zero.
const (
	DefaultTimeout        = 30 * time.Second // to the first byte of the answer
	DefaultConnectTimeout = 10 * time.Second // TCP connect, and the TLS handshake
	DefaultTotalTimeout   = 10 * time.Minute // one whole attempt, a streamed answer included
)

// KeySource yields the key the gateway presents to an upstream; "" means none.
type KeySource = keys.Source

// Options are the worker-wide settings every Target is built with.
type Options struct {
	// AllowInsecureTLS lets a deployment turn certificate verification off
	// (tls.verify false). Development only: without it such a deployment is refused.
	AllowInsecureTLS bool
	// Log receives alert-worthy events, such as a certificate that matches no pin,
	// and breaker state changes.
	Log *slog.Logger
	// Metrics receives breaker states and attempt outcomes; nil records nothing.
	Metrics *Metrics
	// ErrorRateWindow is the span over which a deployment's error rate is measured
	// for the fallback; zero means DefaultErrorRateWindow.
	ErrorRateWindow time.Duration
	// Egress is the worker's outbound proxies and host allowlist; nil calls every
	// host directly.
	Egress *Egress
	// Keys gives each deployment its key source; nil supports only the none and
	// file key sources.
	Keys *keys.Manager
}

// DefaultErrorRateWindow is the default of Options.ErrorRateWindow.
const DefaultErrorRateWindow = 30 * time.Second

// Target is one deployment's upstream endpoint. It is immutable and safe for
// concurrent use; a policy compile builds one per deployment and reuses it while the
// deployment's settings do not change.
type Target struct {
	name      string
	base      string // base URL without a trailing slash
	transport *http.Transport
	client    *http.Client
	keys      KeySource
	log       *slog.Logger
	egress    *Egress
	metrics   *Metrics
	res       *resilience
	latency   latencyEWMA
	firstByte prometheus.Observer // portcullis_upstream_first_byte_seconds of this deployment; nil: none
	total     time.Duration       // bound of one whole attempt
}

// New builds the target of deployment d.
func New(d policy.Deployment, o Options) (*Target, error) {
	u, err := url.Parse(d.BaseURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("deployment %s: base_url %q: must be an http(s) URL", d.Name, d.BaseURL)
	}
	if !d.TLS.Verify && !o.AllowInsecureTLS {
		return nil, fmt.Errorf("deployment %s: tls.verify is false: refused; certificate verification can only be turned off with PORTCULLIS_DEV_ALLOW_INSECURE_TLS=true, in development", d.Name)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.ErrorRateWindow <= 0 {
		o.ErrorRateWindow = DefaultErrorRateWindow
	}
	if o.Egress != nil {
		if err := o.Egress.checkRequest(u); err != nil {
			return nil, fmt.Errorf("deployment %s: base_url %q: %w", d.Name, d.BaseURL, err)
		}
	}
	tlsCfg, err := tlsConfig(d.TLS)
	if err != nil {
		return nil, fmt.Errorf("deployment %s: %w", d.Name, err)
	}
	timeout := time.Duration(d.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	connect := time.Duration(d.ConnectTimeoutSeconds) * time.Second
	if connect <= 0 {
		connect = DefaultConnectTimeout
	}
	total := time.Duration(d.TotalTimeoutSeconds) * time.Second
	if total <= 0 {
		total = DefaultTotalTimeout
	}
	tr := &http.Transport{
		Proxy:                 o.Egress.proxy,
		DialContext:           o.Egress.dialContext(&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}),
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   connect,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   256, // one host per transport: as many as MaxIdleConns
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
	t := &Target{
		name:      d.Name,
		base:      strings.TrimRight(u.String(), "/"),
		transport: tr,
		client: &http.Client{
			Transport: tr,
			// A redirect is never followed: the request body and key stay with the
			// configured host, and the 3xx is reported as an upstream error.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		keys:      keySource(d, o.Keys),
		log:       o.Log,
		egress:    o.Egress,
		metrics:   o.Metrics,
		res:       newResilience(d, o.Metrics, o.Log, o.ErrorRateWindow),
		firstByte: o.Metrics.firstByteOf(d.Name),
		total:     total,
	}
	return t, nil
}

// keySource picks the key source a deployment names: the worker's key manager's, or
// without one (tests: a worker always has a manager, which applies the key
// directory) the sources that need no Vault, with key files anywhere.
func keySource(d policy.Deployment, m *keys.Manager) KeySource {
	if m != nil {
		return m.Source(d)
	}
	switch d.KeySource {
	case policy.KeySourceNone:
		return keys.None{}
	case policy.KeySourceFile:
		return keys.NewFile(d.KeyPath, keys.FileOptions{AllowAnyDir: true})
	case policy.KeySourceVault, policy.KeySourceVaultDynamic:
		return keys.Unavailable{Source: d.KeySource, Reason: "this worker has no key manager"}
	case policy.KeySourceEnv:
		return keys.Unavailable{Source: d.KeySource, Reason: "keys in environment variables are refused"}
	default:
		return keys.Unavailable{Source: d.KeySource, Reason: "unknown key source"}
	}
}

// Name is the deployment's name.
func (t *Target) Name() string { return t.name }

// TotalTimeout bounds one whole attempt at the deployment, answer included.
func (t *Target) TotalTimeout() time.Duration { return t.total }

// CloseIdle closes the target's idle connections; call it once no policy uses the
// target any more.
func (t *Target) CloseIdle() { t.transport.CloseIdleConnections() }

// Call is one upstream request: Body (JSON) POSTed to Path under the deployment's
// base URL, carrying the gateway's RequestID, the deployment's key as Key presents
// it (nil: BearerKey) and, when Trace is set, the trace context of Send's context.
type Call struct {
	Path      string
	Body      []byte
	RequestID string
	Key       KeyHeader
	Trace     TraceInjector
}

// TraceInjector writes the trace context of ctx (W3C traceparent and tracestate)
// into an upstream request's headers.
type TraceInjector interface {
	Inject(ctx context.Context, h http.Header)
}

// KeyHeader presents an upstream key on a request, the way the provider takes it.
// An empty key (key_source none) may still need headers.
type KeyHeader func(h http.Header, key string)

// BearerKey presents the key as Authorization: Bearer, as OpenAI-compatible APIs
// take it.
func BearerKey(h http.Header, key string) {
	if key != "" {
		h.Set("Authorization", "Bearer "+key)
	}
}

// AnthropicKey presents the key as x-api-key, with the anthropic-version every
// Anthropic API call needs.
func AnthropicKey(h http.Header, key string) {
	h.Set("Anthropic-Version", AnthropicVersion)
	if key != "" {
		h.Set("X-Api-Key", key)
	}
}

// Send makes call with the deployment's key and returns the upstream's response,
// whatever its status, and the version of the key it was sent with (0 for a key
// without versions). A 401 during a rotation's overlap is retried once with the
// other valid key. The caller must close the response body. Cancelling ctx (e.g.
// because the client went away) cancels the upstream request. Errors are
// *apierr.Error values.
func (t *Target) Send(ctx context.Context, call Call) (*http.Response, int, error) {
	key, err := t.keys.Key(ctx)
	if err != nil {
		return nil, 0, apierr.Wrap(apierr.UpstreamKey, fmt.Errorf("deployment %s: %w", t.name, err),
			"no upstream key is available for this model")
	}
	resp, err := t.send(ctx, call, key)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, keyVersion(t.keys, key), err
	}
	// The upstream refused the key. During a rotation's overlap the other valid key
	// gets exactly one try; either way the source checks Vault for a newer one.
	ov, ok := t.keys.(keys.Overlapping)
	if !ok {
		return resp, keyVersion(t.keys, key), nil
	}
	ov.Refused()
	other, ok := ov.Other(key)
	if !ok {
		return resp, keyVersion(t.keys, key), nil
	}
	Discard(resp.Body)
	resp.Body.Close()
	t.log.Warn("upstream refused the deployment's key; retrying once with the other valid key",
		"deployment", t.name, "request_id", call.RequestID)
	t.metrics.keyRetry(t.name)
	resp, err = t.send(ctx, call, other)
	return resp, keyVersion(t.keys, other), err
}

// keyVersion is the version of key in src, or 0 when src has no versions.
func keyVersion(src KeySource, key string) int {
	if v, ok := src.(keys.Versioned); ok {
		return v.Version(key)
	}
	return 0
}

// send makes call once, with key.
func (t *Target) send(ctx context.Context, call Call, key string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+call.Path, bytes.NewReader(call.Body))
	if err != nil {
		return nil, apierr.Wrap(apierr.Internal, err, "internal error")
	}
	if t.egress != nil {
		if err := t.egress.checkRequest(req.URL); err != nil {
			return nil, apierr.Wrap(apierr.UpstreamUnavailable, fmt.Errorf("deployment %s: %w", t.name, err),
				"the upstream serving this model is not reachable from this gateway")
		}
	}
	req.Header.Set("Content-Type", "application/json")
	present := call.Key
	if present == nil {
		present = BearerKey
	}
	present(req.Header, key)
	if call.RequestID != "" {
		req.Header.Set("X-Request-Id", call.RequestID)
	}
	if call.Trace != nil {
		call.Trace.Inject(ctx, req.Header)
	}
	start := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		e := classify(ctx, t.name, err)
		if errors.Is(err, errPinMismatch) {
			t.log.Error("upstream certificate matches no pinned public key: refusing the connection",
				"alert", "tls_pin_mismatch", "deployment", t.name, "host", req.URL.Host)
		}
		return nil, e
	}
	if !RetryableStatus(resp.StatusCode) { // a quick failure is no sign of speed
		took := time.Since(start)
		t.metrics.latencyObserved(t.name, t.latency.observe(took))
		if t.firstByte != nil {
			t.firstByte.Observe(took.Seconds())
		}
	}
	return resp, nil
}

// Discard drains a little of an unwanted body, so the connection can be reused.
func Discard(body io.Reader) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
}

// classify turns a transport error into a stable code. The cause names the
// deployment and URL, never the key.
func classify(ctx context.Context, name string, err error) *apierr.Error {
	cause := fmt.Errorf("deployment %s: %w", name, err)
	var ne net.Error
	var certErr *tls.CertificateVerificationError
	msg := err.Error()
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled):
		return apierr.Wrap(apierr.UpstreamError, cause, "request cancelled")
	case errors.Is(err, errPinMismatch):
		return apierr.Wrap(apierr.UpstreamTLS, cause, "the upstream's certificate matches no pinned public key")
	case errors.As(err, &certErr):
		return apierr.Wrap(apierr.UpstreamTLS, cause, "the upstream's certificate is not trusted")
	// crypto/tls reports version mismatches and the peer's alerts only as text.
	case strings.Contains(msg, "tls: protocol version not supported"),
		strings.Contains(msg, "tls: server selected unsupported protocol version"):
		return apierr.Wrap(apierr.UpstreamTLS, cause, "the upstream does not offer the minimum TLS version this deployment requires")
	case strings.Contains(msg, "remote error: tls:"), strings.Contains(msg, "tls: handshake"):
		return apierr.Wrap(apierr.UpstreamTLS, cause, "the TLS handshake with the upstream failed")
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return apierr.Wrap(apierr.UpstreamTimeout, cause, "the upstream did not answer in time")
	default:
		return apierr.Wrap(apierr.UpstreamError, cause, "the upstream could not be reached")
	}
}
