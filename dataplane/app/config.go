package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/internal/api"
	dpaudit "github.com/portcullis-gw/portcullis/dataplane/internal/audit"
	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/dataplane/internal/keys"
	"github.com/portcullis-gw/portcullis/dataplane/internal/limits"
	"github.com/portcullis-gw/portcullis/dataplane/internal/tracing"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/identity"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsconn"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// Defaults of the keys that have one.
const (
	DefaultListen = "127.0.0.1:8081"
	// DefaultMetricsListen is where /metrics (and /debug/pprof/ when on) are
	// served: loopback, apart from the API.
	DefaultMetricsListen = "127.0.0.1:9464"
	DefaultMaxBodyBytes  = 4 << 20 // docs/design.md §4 step 1
	// DefaultMaxUnauthenticated bounds the requests a worker authenticates at once.
	// Authentication is from the headers alone and takes microseconds, except while
	// an unknown kid refreshes the JWKS, when requests pile up behind the fetch.
	DefaultMaxUnauthenticated = 1024
	// DefaultAccessLogFlush is how long an info access log line may wait to go out
	// with others in one write.
	DefaultAccessLogFlush = 100 * time.Millisecond
)

// Bounds of PORTCULLIS_POLICY_MAX_AGE when it is on. The worker checks that its
// policy is current every policycache.DefaultPollInterval, so a healthy worker's
// policy age stays well below it.
const (
	MinPolicyMaxAge = 3 * time.Second
	MaxPolicyMaxAge = 30 * 24 * time.Hour
)

// Config is a data plane's whole configuration. Every field has a flag and a
// PORTCULLIS_* environment variable; see LoadConfig.
type Config struct {
	Region       string // PORTCULLIS_REGION: the region this worker serves, e.g. "eu"
	Listen       string // PORTCULLIS_LISTEN: host:port of the OpenAI-compatible API
	NATSURL      string // PORTCULLIS_NATS_URL: NATS server(s), comma-separated
	NATSCreds    string // PORTCULLIS_NATS_CREDS: NATS user credentials file (JWT + nkey seed)
	NATSCAFile   string // PORTCULLIS_NATS_CA_FILE: CA certificates of the NATS servers
	NATSCertFile string // PORTCULLIS_NATS_CERT_FILE: client certificate, for servers that verify clients
	NATSKeyFile  string // PORTCULLIS_NATS_KEY_FILE: its private key
	JWTIssuer    string // PORTCULLIS_JWT_ISSUER: the required iss claim
	JWTAudience  string // PORTCULLIS_JWT_AUDIENCE: the required aud claim
	// RFC 8725's extras (see auth.Config): accept tokens without a jti, the longest
	// token lifetime (exp - iat; negative: no cap), the typ header tokens must carry.
	JWTAllowMissingJTI bool
	JWTMaxLifetime     time.Duration
	JWTRequiredType    string
	JWKSURL            string // PORTCULLIS_JWKS_URL: where the issuer's signing keys are served
	// PolicyPublicKeys (PORTCULLIS_POLICY_PUBLIC_KEYS) are the comma-separated PEM
	// files of the control plane's policy signing keys (several for a rollover): a
	// snapshot none of them signed is never applied. Required.
	PolicyPublicKeys string
	LogLevel         string // PORTCULLIS_LOG_LEVEL: debug, info, warn or error
	// AccessLogFlush (PORTCULLIS_ACCESS_LOG_FLUSH) is the longest an info access log
	// line waits to go out with others in one write (the binary's logger; see
	// logging.NewBuffered); 0 writes each at once. Any other line, warnings and
	// 5xx access lines included, goes out at once with those waiting.
	AccessLogFlush time.Duration
	WorkerID       string // PORTCULLIS_WORKER_ID: this worker's name in logs and NATS

	// MetricsListen (PORTCULLIS_METRICS_LISTEN) is the host:port of the listener
	// serving /metrics, and /debug/pprof/ with Pprof; "off" turns it off. A Config
	// built by hand (not by LoadConfig) that leaves it empty has no metrics listener,
	// rather than the default port, which two workers in one process would share.
	MetricsListen string
	// Pprof (PORTCULLIS_PPROF) serves net/http/pprof's /debug/pprof/ on the metrics
	// listener.
	Pprof bool
	// MetricsClientLabels (PORTCULLIS_METRICS_CLIENT_LABELS) labels the limiter's
	// portcullis_limits_admitted_total and _denied_total with the client id; off,
	// they count every client together.
	MetricsClientLabels bool

	ExposeRoutingHeaders bool  // PORTCULLIS_EXPOSE_ROUTING_HEADERS: add x-portcullis-region/-deployment
	MaxBodyBytes         int64 // PORTCULLIS_MAX_BODY_BYTES: request body limit
	// MaxUnauthenticated (PORTCULLIS_MAX_UNAUTHENTICATED) bounds the requests the
	// worker authenticates at once; beyond it, 503 overloaded with Retry-After.
	MaxUnauthenticated int
	// TrustedProxies (PORTCULLIS_TRUSTED_PROXIES) are the CIDRs of the load
	// balancers in front of the worker, whose X-Forwarded-For (or PROXY protocol
	// header, with ProxyProtocol) says where a request came from; "" trusts none.
	TrustedProxies string
	// ProxyProtocol (PORTCULLIS_PROXY_PROTOCOL): connections from TrustedProxies
	// must open with a PROXY protocol (v1 or v2) header.
	ProxyProtocol bool

	// DevAllowInsecureTLS (PORTCULLIS_DEV_ALLOW_INSECURE_TLS) lets deployments turn
	// upstream certificate verification off. Development only.
	DevAllowInsecureTLS bool

	EgressHTTPProxy  string // PORTCULLIS_EGRESS_HTTP_PROXY: proxy of http:// upstreams
	EgressHTTPSProxy string // PORTCULLIS_EGRESS_HTTPS_PROXY: proxy of https:// upstreams
	EgressNoProxy    string // PORTCULLIS_EGRESS_NO_PROXY: hosts and domain suffixes called directly
	// EgressAllowHosts (PORTCULLIS_EGRESS_ALLOW_HOSTS) lists the only upstream hosts
	// the worker calls. Required, in a Config built by hand too (Start validates it
	// as LoadConfig does): empty is refused unless DevAllowAnyEgress.
	EgressAllowHosts string
	// DevAllowAnyEgress (PORTCULLIS_DEV_ALLOW_ANY_EGRESS) lets an empty
	// EgressAllowHosts mean any host, with a warning at start. Development only.
	DevAllowAnyEgress bool

	FallbackErrorRate float64       // PORTCULLIS_FALLBACK_ERROR_RATE: fall back above this error rate
	FallbackWindow    time.Duration // PORTCULLIS_FALLBACK_WINDOW: span of the error rate

	LimitsFailPolicy string        // PORTCULLIS_LIMITS_FAIL_POLICY: fail_closed or fail_open
	LimitsKVTimeout  time.Duration // PORTCULLIS_LIMITS_KV_TIMEOUT: bound of one PC_LIMITS operation
	LimitsIdleReturn time.Duration // PORTCULLIS_LIMITS_IDLE_RETURN: unused leases go back after this long

	// Vault (PORTCULLIS_VAULT_*) is where keys of deployments with key_source vault
	// or vault_dynamic come from; its address empty means no Vault.
	Vault vaultclient.Config
	// KeyRefreshInterval (PORTCULLIS_KEY_REFRESH_INTERVAL) is the period of the check
	// of each Vault key's metadata, behind the PC_KEYS events.
	KeyRefreshInterval time.Duration
	// DevAllowEnvKeys (PORTCULLIS_DEV_ALLOW_ENV_KEYS) lets deployments take their key
	// from an environment variable (key_source env). Development only.
	DevAllowEnvKeys bool
	// KeyDir (PORTCULLIS_KEY_DIR) is the absolute directory that the key files of
	// deployments with key_source file must lie under (symlinks resolved); a key file
	// elsewhere, or any key file when it is empty, is refused (503
	// upstream_key_unavailable) unless DevAllowAnyKeyFile. Key files must be
	// readable by their owner only either way.
	KeyDir string
	// DevAllowAnyKeyFile (PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE) lets key_source file
	// read a file anywhere. Development only.
	DevAllowAnyKeyFile bool

	// PolicyMaxAge (PORTCULLIS_POLICY_MAX_AGE) turns /readyz unready (503
	// policy_too_old) once the worker has not confirmed for this long that its policy
	// snapshot is the newest in PC_POLICY; 0 (the default) never does.
	PolicyMaxAge time.Duration

	// GuardrailsClassifierURL (PORTCULLIS_GUARDRAILS_CLASSIFIER_URL) is the
	// self-hosted prompt-injection classifier that injection policies with
	// classifier fail_open or fail_closed ask (empty: none; fail_closed policies
	// then refuse their requests); GuardrailsClassifierTimeout bounds each call.
	GuardrailsClassifierURL     string
	GuardrailsClassifierTimeout time.Duration

	// Audit (PORTCULLIS_AUDIT_*): one event per request, through an on-disk spool to
	// PC_AUDIT_<REGION>; see docs/audit.md.
	AuditSpoolDir       string        // the spool; must stay the same across restarts (required)
	AuditSpoolMaxBytes  int64         // bound of the spool on disk
	AuditFullPolicy     string        // reject_requests or drop_oldest
	AuditSink           string        // stdout, a file path, or none ("" is none)
	AuditKeyFile        string        // file holding the key of the prompt and response hashes
	AuditHeaders        string        // comma-separated allowlist of request headers events record
	AuditPlacementTag   string        // server tag the region's stream is placed on
	AuditStreamMaxAge   time.Duration // how long the stream keeps events
	AuditStreamReplicas int           // replicas of the region's stream

	// Tracing (docs/tracing.md) traces requests over OTLP when the standard
	// OTEL_EXPORTER_OTLP_ENDPOINT (or _TRACES_ENDPOINT) is set, and is off
	// otherwise. Its OTLP settings come from the standard OTEL_* variables only
	// (see tracing.Config.ReadEnv); ClientContext (PORTCULLIS_TRACE_CLIENT_CONTEXT)
	// and Upstream (PORTCULLIS_TRACE_PROPAGATE_UPSTREAM) have flags too.
	Tracing tracing.Config

	// Clock is the limiter's clock: its minute and hour windows follow it. It has
	// no flag; nil is the wall clock. Tests move it so that no window turns while
	// they count.
	Clock func() time.Time
}

var regionPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// LoadConfig reads the configuration from defaults, then the environment (looked up
// with getenv), then args, and validates all of it at once. Usage text goes to
// stderr. With -h it returns flag.ErrHelp.
func LoadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := Default() // its values are the flags' defaults
	l := config.NewLoader("dataplane", stderr)
	l.String(&cfg.Region, "region", "", "region this worker serves, e.g. eu (required)")
	l.String(&cfg.Listen, "listen", cfg.Listen, "address of the OpenAI-compatible API")
	l.String(&cfg.MetricsListen, httpmetrics.KeyListen, cfg.MetricsListen, `address of the listener serving /metrics (and /debug/pprof/ with pprof), apart from the API; "off" turns it off`)
	l.Bool(&cfg.Pprof, httpmetrics.KeyPprof, false, "serve /debug/pprof/ on the metrics listener")
	l.Bool(&cfg.MetricsClientLabels, "metrics-client-labels", false, "label the limiter's admitted and denied counters with the client id (otherwise they count every client together)")
	l.String(&cfg.NATSURL, "nats-url", "", "NATS server URL(s), comma-separated (required)")
	natsconn.Flags(l, &cfg.NATSCreds, &cfg.NATSCAFile)
	natsconn.ClientCertFlags(l, &cfg.NATSCertFile, &cfg.NATSKeyFile)
	l.String(&cfg.JWTIssuer, "jwt-issuer", "", "required iss claim of client tokens (required)")
	l.String(&cfg.JWTAudience, "jwt-audience", cfg.JWTAudience, "required aud claim of client tokens")
	l.Bool(&cfg.JWTAllowMissingJTI, "jwt-allow-missing-jti", false, "accept client tokens without a jti (they cannot be revoked one by one)")
	l.Duration(&cfg.JWTMaxLifetime, "jwt-max-lifetime", cfg.JWTMaxLifetime, "longest client token lifetime, exp - iat (negative: no cap)")
	l.String(&cfg.JWTRequiredType, "jwt-required-type", "", "typ header client tokens must carry, e.g. at+jwt (empty: not checked)")
	l.String(&cfg.PolicyPublicKeys, "policy-public-keys", "", "comma-separated PEM files of the control plane's policy signing public keys (required)")
	l.String(&cfg.JWKSURL, "jwks-url", "", "http(s) URL of the issuer's JWKS (required)")
	l.Bool(&cfg.ExposeRoutingHeaders, "expose-routing-headers", false, "add x-portcullis-region and x-portcullis-deployment to responses")
	l.Int64(&cfg.MaxBodyBytes, "max-body-bytes", cfg.MaxBodyBytes, "request body limit in bytes")
	l.Int(&cfg.MaxUnauthenticated, "max-unauthenticated", cfg.MaxUnauthenticated, "most requests authenticated at once; beyond it 503 overloaded with Retry-After")
	l.String(&cfg.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs of the load balancers whose X-Forwarded-For (or PROXY protocol) gives the client's address; empty trusts none")
	l.Bool(&cfg.ProxyProtocol, "proxy-protocol", false, "connections from trusted-proxies must open with a PROXY protocol header")
	l.Bool(&cfg.DevAllowInsecureTLS, "dev-allow-insecure-tls", false, "development only: allow deployments with tls.verify false (refused otherwise)")
	l.String(&cfg.EgressHTTPProxy, "egress-http-proxy", "", "proxy URL for http:// upstreams (default: the environment's HTTP_PROXY)")
	l.String(&cfg.EgressHTTPSProxy, "egress-https-proxy", "", "proxy URL for https:// upstreams (default: the environment's HTTPS_PROXY)")
	l.String(&cfg.EgressNoProxy, "egress-no-proxy", "", "comma-separated hosts and domain suffixes reached without the proxy")
	l.String(&cfg.EgressAllowHosts, "egress-allow-hosts", "", `comma-separated upstream hosts or host:port the worker may call ("*.example.com" for subdomains); required unless dev-allow-any-egress`)
	l.Float64(&cfg.FallbackErrorRate, "fallback-error-rate", cfg.FallbackErrorRate, "a deployment whose error rate is above this falls back to the policy's fallback model")
	l.Duration(&cfg.FallbackWindow, "fallback-window", cfg.FallbackWindow, "span over which a deployment's error rate is measured")
	l.String(&cfg.LimitsFailPolicy, "limits-fail-policy", cfg.LimitsFailPolicy, "when NATS is unreachable: fail_closed (503 limits_unavailable) or fail_open (admit, count locally, reconcile)")
	l.Duration(&cfg.LimitsKVTimeout, "limits-kv-timeout", cfg.LimitsKVTimeout, "bound of one operation on the global limit counters")
	l.Duration(&cfg.LimitsIdleReturn, "limits-idle-return", cfg.LimitsIdleReturn, "leased budget unused this long goes back to the global counters")
	l.String(&cfg.AuditSpoolDir, "audit-spool-dir", cfg.AuditSpoolDir, "audit spool directory; must stay the same across restarts of this worker, and no two workers may share it")
	l.Int64(&cfg.AuditSpoolMaxBytes, "audit-spool-max-bytes", cfg.AuditSpoolMaxBytes, "bound of the audit spool on disk")
	l.String(&cfg.AuditFullPolicy, "audit-full-policy", cfg.AuditFullPolicy, "when the audit spool is full: reject_requests (503 audit_unavailable) or drop_oldest")
	l.String(&cfg.AuditSink, "audit-sink", cfg.AuditSink, "where audit events are also written as JSON lines: stdout, a file path, or none")
	l.String(&cfg.AuditKeyFile, "audit-key-file", "", "file holding the key of the prompt and response hashes (HMAC-SHA-256), the same on every worker; empty: a random key per process, so hashes do not correlate across workers")
	l.String(&cfg.AuditHeaders, "audit-headers", cfg.AuditHeaders, "comma-separated request headers audit events record (credentials never are)")
	l.String(&cfg.AuditPlacementTag, "audit-placement-tag", "", "server tag the region's audit stream is placed on, e.g. region:eu (empty: no placement)")
	l.Duration(&cfg.AuditStreamMaxAge, "audit-stream-max-age", cfg.AuditStreamMaxAge, "how long the region's audit stream keeps events")
	l.Int(&cfg.AuditStreamReplicas, "audit-stream-replicas", cfg.AuditStreamReplicas, "replicas of the region's audit stream")
	vaultclient.Flags(l, &cfg.Vault)
	l.Duration(&cfg.KeyRefreshInterval, "key-refresh-interval", cfg.KeyRefreshInterval, "period of the check of each Vault key's metadata for a version missed by the key events")
	l.Bool(&cfg.DevAllowEnvKeys, "dev-allow-env-keys", false, "development only: allow deployments with key_source env (keys in environment variables; refused otherwise)")
	l.String(&cfg.KeyDir, "key-dir", "", "absolute directory key_source file keys must lie under (symlinks resolved); empty refuses file keys")
	l.Bool(&cfg.DevAllowAnyKeyFile, "dev-allow-any-key-file", false, "development only: let key_source file read a key file anywhere")
	l.Bool(&cfg.DevAllowAnyEgress, "dev-allow-any-egress", false, "development only: an empty egress-allow-hosts allows any upstream host (refused otherwise)")
	l.Duration(&cfg.PolicyMaxAge, "policy-max-age", 0, "/readyz answers 503 policy_too_old once the policy has not been confirmed current for this long (0: never)")
	l.String(&cfg.GuardrailsClassifierURL, "guardrails-classifier-url", "", `prompt-injection classifier URL, answering POST {"texts":[...]} with {"scores":[...]} (https://, or http:// on loopback; empty: none)`)
	l.Duration(&cfg.GuardrailsClassifierTimeout, "guardrails-classifier-timeout", cfg.GuardrailsClassifierTimeout, "bound of one classifier call; past it the call has failed (fail_open passes, fail_closed refuses)")
	l.String(&cfg.Tracing.ClientContext, tracing.KeyClientContext, cfg.Tracing.ClientContext, "a client's traceparent: accept (the parent of the request's span) or ignore (a new trace, linked to it); tracing is on with OTEL_EXPORTER_OTLP_ENDPOINT")
	l.String(&cfg.Tracing.Upstream, tracing.KeyUpstream, cfg.Tracing.Upstream, "which upstream requests carry the trace context: never, self_hosted (deployments of kind self_hosted) or always")
	l.String(&cfg.LogLevel, "log-level", cfg.LogLevel, "log level: debug, info, warn or error")
	l.Duration(&cfg.AccessLogFlush, "access-log-flush", cfg.AccessLogFlush, "longest an info access log line waits to go out with others in one write (0: each at once)")
	l.String(&cfg.WorkerID, "worker-id", cfg.WorkerID, "this worker's id in logs")
	rest, err := l.Parse(args, getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, err
		}
		return Config{}, fmt.Errorf("dataplane config: %w", err)
	}
	cfg.Tracing.ReadEnv(getenv) // the standard OTEL_* variables, which have no flags
	var p config.Problems
	if len(rest) > 0 {
		p.Add("args", strings.Join(rest, " "), "unexpected positional arguments")
	}
	cfg.validate(&p)
	if err := p.Err(); err != nil {
		return Config{}, fmt.Errorf("dataplane config: %w", err)
	}
	return cfg, nil
}

// Default is the configuration with every default set: the one source of the
// defaults. LoadConfig starts from it, so its values are the flags' defaults, and
// Start fills the zero fields of a Config built by hand from it (see withDefaults).
func Default() Config {
	return Config{
		Listen:                      DefaultListen,
		MetricsListen:               DefaultMetricsListen,
		JWTAudience:                 identity.DefaultAudience,
		JWTMaxLifetime:              auth.DefaultMaxLifetime,
		MaxBodyBytes:                DefaultMaxBodyBytes,
		MaxUnauthenticated:          DefaultMaxUnauthenticated,
		FallbackErrorRate:           api.DefaultFallbackErrorRate,
		FallbackWindow:              upstream.DefaultErrorRateWindow,
		LimitsFailPolicy:            limits.FailClosed,
		LimitsKVTimeout:             limits.DefaultOpTimeout,
		LimitsIdleReturn:            limits.DefaultIdleReturn,
		AuditSpoolDir:               filepath.Join(".data", "audit-spool"),
		AuditSpoolMaxBytes:          dpaudit.DefaultSpoolMaxBytes,
		AuditFullPolicy:             dpaudit.RejectRequests,
		AuditSink:                   "stdout",
		AuditHeaders:                strings.Join(audit.DefaultHeaders, ","),
		AuditStreamMaxAge:           dpaudit.DefaultStreamMaxAge,
		AuditStreamReplicas:         1,
		Vault:                       vaultclient.DefaultConfig(),
		KeyRefreshInterval:          keys.DefaultRefreshInterval,
		GuardrailsClassifierTimeout: api.DefaultClassifierTimeout,
		Tracing:                     tracing.Default(),
		LogLevel:                    "info",
		AccessLogFlush:              DefaultAccessLogFlush,
		WorkerID:                    defaultWorkerID(),
	}
}

// withDefaults fills the zero fields of c from Default, for callers (such as
// tests) that build a Config by hand instead of with LoadConfig; nested structs
// field by field. Some fields keep their zero value, because for a Config built by
// hand it means something: AuditSpoolDir (required, so never guessed) and
// AuditSink ("" writes no JSON lines). And MetricsListen left empty becomes "off",
// not the default port, which the workers one process starts would share.
// EgressAllowHosts has no default either way: left empty, the result fails
// validation as in LoadConfig, unless DevAllowAnyEgress says any host will do.
func (c Config) withDefaults() Config {
	d := Default()
	d.AuditSpoolDir, d.AuditSink, d.MetricsListen = "", "", httpmetrics.ListenOff
	fillZero(reflect.ValueOf(&c).Elem(), reflect.ValueOf(d))
	return c
}

// fillZero sets every zero field of the struct dst to its value in src, recursing
// into nested structs.
func fillZero(dst, src reflect.Value) {
	for i := range dst.NumField() {
		f := dst.Field(i)
		switch {
		case f.Kind() == reflect.Struct:
			fillZero(f, src.Field(i))
		case f.IsZero():
			f.Set(src.Field(i))
		}
	}
}

func (c *Config) validate(p *config.Problems) {
	if !regionPattern.MatchString(c.Region) {
		p.Add("region", c.Region, "required: 1-64 letters, digits, '-' or '_'")
	}
	if host, port, err := net.SplitHostPort(c.Listen); err != nil {
		p.Add("listen", c.Listen, "must be host:port")
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || host == "" {
		p.Add("listen", c.Listen, "must be host:port with a numeric port")
	}
	if reason := httpmetrics.CheckListen(c.MetricsListen); reason != "" {
		p.Add(httpmetrics.KeyListen, c.MetricsListen, reason)
	}
	if c.NATSURL == "" {
		p.Add("nats-url", c.NATSURL, "required")
	} else {
		for _, part := range strings.Split(c.NATSURL, ",") {
			u, err := url.Parse(strings.TrimSpace(part))
			if err != nil || u.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
				p.Add("nats-url", logging.RedactURL(c.NATSURL), "must be nats://, tls://, ws:// or wss:// URLs, comma-separated")
				break
			}
		}
	}
	c.natsOptions().Validate(p)
	// Credentials of another region's data planes would have every audit event
	// refused by NATS: say so at startup instead.
	if user := natsconn.CredsUserName(c.NATSCreds); strings.HasPrefix(user, "dp-") && user != "dp-"+natsnames.Token(c.Region) {
		p.Add(natsconn.KeyCreds, c.NATSCreds, fmt.Sprintf("holds the credentials of %s, but this worker's region is %q (want dp-%s)",
			user, c.Region, natsnames.Token(c.Region)))
	}
	if strings.TrimSpace(c.JWTIssuer) == "" {
		p.Add("jwt-issuer", c.JWTIssuer, "required")
	}
	if strings.TrimSpace(c.JWTAudience) == "" {
		p.Add("jwt-audience", c.JWTAudience, "must not be empty")
	}
	if strings.TrimSpace(c.PolicyPublicKeys) == "" {
		p.Add("policy-public-keys", c.PolicyPublicKeys, "required: the control plane's policy signing public key file(s), e.g. <its data dir>/policy-signing-key.pub")
	} else if _, err := signing.LoadPublicKeys(splitList(c.PolicyPublicKeys)...); err != nil {
		p.Add("policy-public-keys", c.PolicyPublicKeys, "must be readable PEM Ed25519 public keys: "+err.Error())
	}
	if c.JWKSURL == "" {
		p.Add("jwks-url", c.JWKSURL, "required: an https:// URL (http:// on a loopback host)")
	} else if err := auth.CheckJWKSURL(c.JWKSURL); err != nil {
		p.Add("jwks-url", c.JWKSURL, err.Error())
	}
	if c.MaxBodyBytes <= 0 {
		p.Add("max-body-bytes", c.MaxBodyBytes, "must be positive")
	}
	if c.MaxUnauthenticated <= 0 {
		p.Add("max-unauthenticated", c.MaxUnauthenticated, "must be positive")
	}
	if trusted, err := api.ParseTrustedProxies(c.TrustedProxies); err != nil {
		p.Add("trusted-proxies", c.TrustedProxies, "must be comma-separated CIDRs or IP addresses: "+err.Error())
	} else if c.ProxyProtocol && len(trusted) == 0 {
		p.Add("proxy-protocol", c.ProxyProtocol, "needs trusted-proxies: the PROXY protocol is only accepted from them")
	}
	if c.AccessLogFlush < 0 || c.AccessLogFlush > time.Minute {
		p.Add("access-log-flush", c.AccessLogFlush.String(), "must be from 0 to 1m")
	}
	if !logging.ValidLevel(c.LogLevel) {
		p.Add("log-level", c.LogLevel, "must be debug, info, warn or error")
	}
	if strings.TrimSpace(c.WorkerID) == "" {
		p.Add("worker-id", c.WorkerID, "must not be empty")
	}
	if _, err := c.egress(); err != nil {
		p.Add("egress", err.Error(), "must be valid")
	}
	if strings.TrimSpace(c.EgressAllowHosts) == "" && !c.DevAllowAnyEgress {
		p.Add("egress-allow-hosts", c.EgressAllowHosts, "required: the upstream hosts this worker may call, comma-separated "+
			"(a region's endpoints only: eu.api.openai.com for an eu worker, not the global api.openai.com); "+
			"an empty list allows any host only with PORTCULLIS_DEV_ALLOW_ANY_EGRESS=true, in development")
	}
	if c.KeyDir != "" && (!filepath.IsAbs(c.KeyDir) || filepath.Clean(c.KeyDir) == "/") {
		p.Add("key-dir", c.KeyDir, "must be an absolute directory path other than /")
	}
	if c.PolicyMaxAge != 0 && (c.PolicyMaxAge < MinPolicyMaxAge || c.PolicyMaxAge > MaxPolicyMaxAge) {
		p.Add("policy-max-age", c.PolicyMaxAge, fmt.Sprintf("must be 0 (off) or between %v and %v", MinPolicyMaxAge, MaxPolicyMaxAge))
	}
	if c.GuardrailsClassifierURL != "" {
		if err := auth.CheckJWKSURL(c.GuardrailsClassifierURL); err != nil { // the same rule as the JWKS URL's
			p.Add("guardrails-classifier-url", logging.RedactURL(c.GuardrailsClassifierURL), err.Error())
		}
	}
	if c.GuardrailsClassifierTimeout < 10*time.Millisecond || c.GuardrailsClassifierTimeout > 30*time.Second {
		p.Add("guardrails-classifier-timeout", c.GuardrailsClassifierTimeout, "must be between 10ms and 30s")
	}
	if c.FallbackErrorRate <= 0 || c.FallbackErrorRate > 1 {
		p.Add("fallback-error-rate", c.FallbackErrorRate, "must be above 0 and at most 1")
	}
	if c.FallbackWindow < time.Second || c.FallbackWindow > time.Hour {
		p.Add("fallback-window", c.FallbackWindow, "must be between 1s and 1h")
	}
	c.Vault.Check(p)
	if strings.TrimSpace(c.AuditSpoolDir) == "" {
		p.Add("audit-spool-dir", c.AuditSpoolDir, "required: a directory that stays the same across restarts")
	}
	if c.AuditSpoolMaxBytes < dpaudit.MinSpoolMaxBytes {
		p.Add("audit-spool-max-bytes", c.AuditSpoolMaxBytes, fmt.Sprintf("must be at least %d", dpaudit.MinSpoolMaxBytes))
	}
	if c.AuditFullPolicy != dpaudit.RejectRequests && c.AuditFullPolicy != dpaudit.DropOldest {
		p.Add("audit-full-policy", c.AuditFullPolicy, "must be reject_requests or drop_oldest")
	}
	for _, h := range strings.Split(c.AuditHeaders, ",") {
		if h = strings.TrimSpace(h); h == "" || strings.ContainsAny(h, " :\t") {
			p.Add("audit-headers", c.AuditHeaders, "must be header names, comma-separated")
			break
		}
	}
	if c.AuditStreamMaxAge < time.Hour {
		p.Add("audit-stream-max-age", c.AuditStreamMaxAge, "must be at least 1h")
	}
	if c.AuditStreamReplicas < 1 || c.AuditStreamReplicas > 5 {
		p.Add("audit-stream-replicas", c.AuditStreamReplicas, "must be from 1 to 5")
	}
	if c.KeyRefreshInterval < time.Second || c.KeyRefreshInterval > time.Hour {
		p.Add("key-refresh-interval", c.KeyRefreshInterval, "must be between 1s and 1h")
	}
	if c.LimitsFailPolicy != limits.FailClosed && c.LimitsFailPolicy != limits.FailOpen {
		p.Add("limits-fail-policy", c.LimitsFailPolicy, "must be fail_closed or fail_open")
	}
	if c.LimitsKVTimeout < 10*time.Millisecond || c.LimitsKVTimeout > time.Minute {
		p.Add("limits-kv-timeout", c.LimitsKVTimeout, "must be between 10ms and 1m")
	}
	if c.LimitsIdleReturn < 10*time.Millisecond || c.LimitsIdleReturn > time.Minute {
		p.Add("limits-idle-return", c.LimitsIdleReturn, "must be between 10ms and 1m")
	}
	c.Tracing.Check(p)
}

// egress is the worker's outbound policy.
func (c Config) egress() (*upstream.Egress, error) {
	return upstream.NewEgress(c.EgressHTTPProxy, c.EgressHTTPSProxy, c.EgressNoProxy, c.EgressAllowHosts)
}

// natsOptions are the options of this worker's NATS connection.
func (c Config) natsOptions() natsconn.Options {
	return natsconn.Options{URL: c.NATSURL, CredsFile: c.NATSCreds, CAFile: c.NATSCAFile,
		CertFile: c.NATSCertFile, KeyFile: c.NATSKeyFile, Name: "portcullis-dataplane " + c.WorkerID}
}

func defaultWorkerID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "dataplane"
	}
	return host + "-" + strconv.Itoa(os.Getpid())
}
