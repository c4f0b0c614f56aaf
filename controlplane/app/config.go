package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/controlplane/internal/anomaly"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive"
	"github.com/portcullis-gw/portcullis/controlplane/internal/rotator"
	"github.com/portcullis-gw/portcullis/controlplane/internal/signin"
	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsconn"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// Config is the control plane's configuration. Every field has a flag and a
// PORTCULLIS_* environment variable (see LoadConfig).
type Config struct {
	DatabaseURL        string // database-url, required
	Listen             string // listen, host:port of the HTTP server
	NATSURL            string // nats-url; empty starts an embedded nats-server
	NATSCreds          string // nats-creds: NATS user credentials file, only with nats-url
	NATSCAFile         string // nats-ca-file: CA certificates of the NATS servers, only with nats-url
	NATSCertFile       string // nats-cert-file: client certificate for NATS, only with nats-url
	NATSKeyFile        string // nats-key-file: its private key
	EmbeddedNATSListen string // embedded-nats-listen, used when NATSURL is empty
	DataDir            string // data-dir: admin token, signing key, embedded JetStream store
	// PolicySigningKeyFile (policy-signing-key-file) is the Ed25519 key (PEM, PKCS #8,
	// mode 0600) that signs every policy snapshot; "" is
	// <DataDir>/policy-signing-key.pem. Missing, it is generated, with its public key
	// beside it (.pub) for the data planes' PORTCULLIS_POLICY_PUBLIC_KEYS.
	PolicySigningKeyFile string
	IssuerURL            string // issuer-url of the dev issuer; empty means http://<listen address>
	LogLevel             string // log-level: debug, info, warn or error
	DevIssuer            bool   // dev-issuer: serve the development JWT issuer
	PublishInterval      time.Duration
	NATSReplicas         int           // nats-replicas of every KV bucket (1 with the embedded server)
	WorkerTTL            time.Duration // worker-ttl: how long a data-plane heartbeat outlives its worker
	// Vault (vault-*) is where the key rotator reads and writes provider keys; its
	// address empty means no Vault, and rotation requests fail with a clear error.
	Vault vaultclient.Config
	// RotationCheckInterval (rotation-check-interval) is how often the rotator looks
	// for due rotations, new Vault versions and ended overlaps.
	RotationCheckInterval time.Duration
	// DevAllowEnvKeys (dev-allow-env-keys) lets the admin API accept deployments with
	// key_source env. Development only.
	DevAllowEnvKeys bool
	// KeyDir (key-dir) is the absolute directory, on the data planes, under which
	// deployments with key_source file must keep their key files: the admin API
	// refuses any other key_path (checked lexically: the files are not on this host).
	// Empty, key_source file is refused unless DevAllowAnyKeyFile.
	KeyDir string
	// DevAllowAnyKeyFile (dev-allow-any-key-file) lets key_source file name any path.
	// Development only.
	DevAllowAnyKeyFile bool
	// AuditIngest (audit-ingest) archives the regions' audit streams in Postgres.
	// Replicas share the work; turning it off on some leaves it to the others.
	AuditIngest bool
	// AuditSigningKeyFile (audit-signing-key-file) is the Ed25519 key (PEM, PKCS #8,
	// mode 0600) that signs the audit checkpoints and every audit export; "" is
	// <DataDir>/audit-signing-key.pem. Missing, it is generated, with its public key
	// beside it (.pub) for `portcullis audit verify --pubkey`.
	AuditSigningKeyFile string
	// AuditCheckpointInterval (audit-checkpoint-interval) is how often each region's
	// audit chain head is signed, kept in Postgres and published on PC_CHECKPOINTS;
	// 0 turns that off on this replica (exports are signed regardless).
	AuditCheckpointInterval time.Duration
	// AnomalyCheckInterval (anomaly-check-interval) is how often the anomaly rules
	// are checked; 0 turns the detector off on this replica.
	AnomalyCheckInterval time.Duration
	// AlertWebhookURL (alert-webhook-url) receives every alert (of the anomaly rules
	// without their own webhook_url, key and policy lag alerts); empty sends none.
	AlertWebhookURL string
	// AlertWebhookSecretFile (alert-webhook-secret-file) holds the HMAC key that
	// signs webhook bodies; required for any webhook to be sent.
	AlertWebhookSecretFile string
	// AlertWebhookAllowPrivate (alert-webhook-allow-private) lets webhooks reach
	// private, loopback, link-local, unspecified and CGNAT addresses. Development and
	// tests only.
	AlertWebhookAllowPrivate bool
	// OpenAIAdminURL (openai-admin-url) is the base URL of OpenAI's organization admin
	// API, the only place the openai_admin minter sends the admin key: https, or http
	// to a loopback host; empty means rotator.DefaultOpenAIAdminURL.
	OpenAIAdminURL string
	// PolicyLagAlertAfter (policy-lag-alert-after) raises a policy_lag alert when a
	// worker's policy version has been behind the published one for this long; 0
	// turns the alert off.
	PolicyLagAlertAfter time.Duration
	// MetricsListen (metrics-listen) is the host:port of the listener serving
	// /metrics, and /debug/pprof/ with Pprof; "off" turns it off. A Config built by
	// hand (not by LoadConfig) that leaves it empty has no metrics listener: Start
	// reads it as "off", rather than a fixed port that two control planes in one
	// process (tests) would share.
	MetricsListen string
	// Pprof (pprof) serves net/http/pprof's /debug/pprof/ on the metrics listener.
	Pprof bool
	// AdminTokenMaxTTL (admin-token-max-ttl) is the longest expiry an admin API token
	// may be given.
	AdminTokenMaxTTL time.Duration
	// TrustedProxies (trusted-proxies) are the CIDRs of the reverse proxies in front
	// of the control plane, whose X-Forwarded-For names the client address the change
	// history records; empty trusts none and records the peer's address.
	TrustedProxies string
	// PublicURL (public-url) is the control plane's URL as browsers reach it; the
	// OIDC redirect URL is PublicURL/auth/callback. Empty: http://<listen address>.
	PublicURL string
	// OIDC signs people in (oidc-*, session-*, cli-token-ttl); off while
	// OIDC.Issuer is empty.
	OIDC OIDCConfig
}

// OIDCConfig is the sign-in's configuration (docs/admin-identity.md).
type OIDCConfig struct {
	Issuer           string        // oidc-issuer
	ClientID         string        // oidc-client-id
	ClientSecretFile string        // oidc-client-secret-file
	Scopes           string        // oidc-scopes, comma-separated, besides openid
	RoleClaim        string        // oidc-role-claim
	RoleMap          string        // oidc-role-map: value=role[:tenant],…
	NameClaim        string        // oidc-name-claim
	IdleTimeout      time.Duration // session-idle-timeout
	MaxAge           time.Duration // session-max-age
	CLITokenTTL      time.Duration // cli-token-ttl
}

// Defaults of the keys that have one.
const (
	DefaultListen             = "127.0.0.1:8080"
	DefaultMetricsListen      = "127.0.0.1:9465" // the data plane's default is 9464
	DefaultEmbeddedNATSListen = "127.0.0.1:14222"
	DefaultDataDir            = ".data"
	DefaultPublishInterval    = 30 * time.Second
	DefaultNATSReplicas       = 1
	DefaultWorkerTTL          = natsbuckets.DefaultWorkerTTL
)

// DefaultPolicyLagAlertAfter is policy-lag-alert-after's default.
const DefaultPolicyLagAlertAfter = 2 * time.Minute

// Bounds of the keys that have them.
const (
	maxNATSReplicas = 5 // JetStream's own maximum
	minWorkerTTL    = 3 * time.Second
	maxWorkerTTL    = 5 * time.Minute
)

// Flags declares every key on l, with its default, writing into cfg.
func Flags(l *config.Loader, cfg *Config) {
	l.String(&cfg.DatabaseURL, "database-url", "", "PostgreSQL URL (required)")
	l.String(&cfg.Listen, "listen", DefaultListen, "HTTP listen address host:port (port 0 picks a free port)")
	l.String(&cfg.MetricsListen, httpmetrics.KeyListen, DefaultMetricsListen, `address of the listener serving /metrics (and /debug/pprof/ with pprof), apart from the HTTP server; "off" turns it off`)
	l.Bool(&cfg.Pprof, httpmetrics.KeyPprof, false, "serve /debug/pprof/ on the metrics listener")
	l.String(&cfg.NATSURL, "nats-url", "", "NATS server URL(s), comma-separated; empty starts an embedded nats-server")
	natsconn.Flags(l, &cfg.NATSCreds, &cfg.NATSCAFile)
	natsconn.ClientCertFlags(l, &cfg.NATSCertFile, &cfg.NATSKeyFile)
	l.String(&cfg.EmbeddedNATSListen, "embedded-nats-listen", DefaultEmbeddedNATSListen, "listen address of the embedded nats-server")
	l.String(&cfg.PolicySigningKeyFile, "policy-signing-key-file", "", "Ed25519 key (PEM) that signs policy snapshots; generated if missing, public key beside it as .pub (default <data-dir>/policy-signing-key.pem)")
	l.String(&cfg.DataDir, "data-dir", DefaultDataDir, "data directory: admin token, JWT signing key, embedded JetStream store")
	l.Bool(&cfg.DevIssuer, "dev-issuer", false, "serve the development JWT issuer (JWKS, discovery, POST /admin/v1/tokens)")
	l.String(&cfg.IssuerURL, "issuer-url", "", "iss of dev tokens and base of the JWKS URL (default http://<listen address>)")
	l.Duration(&cfg.PublishInterval, "publish-interval", DefaultPublishInterval, "republish the policy snapshot at least this often")
	l.Int(&cfg.NATSReplicas, "nats-replicas", DefaultNATSReplicas, "replicas of the PC_POLICY, PC_LIMITS and PC_WORKERS buckets (1 to 5; 1 with the embedded nats-server)")
	l.Duration(&cfg.WorkerTTL, "worker-ttl", DefaultWorkerTTL, "TTL of data-plane heartbeats in PC_WORKERS: a crashed worker's concurrency slots come back within it (3s to 5m)")
	vaultclient.Flags(l, &cfg.Vault)
	l.Duration(&cfg.RotationCheckInterval, "rotation-check-interval", rotator.DefaultCheckInterval, "how often the key rotator looks for due rotations, new Vault versions and ended overlaps (1s to 1h)")
	l.Bool(&cfg.DevAllowEnvKeys, "dev-allow-env-keys", false, "development only: let the admin API accept deployments with key_source env")
	l.String(&cfg.KeyDir, "key-dir", "", "absolute directory (on the data planes) that key_source file paths must lie under; empty refuses key_source file")
	l.Bool(&cfg.DevAllowAnyKeyFile, "dev-allow-any-key-file", false, "development only: let the admin API accept key_source file with any path")
	l.Bool(&cfg.AuditIngest, "audit-ingest", true, "archive the regions' audit streams (PC_AUDIT_<REGION>) in Postgres, hash-chained per region")
	l.String(&cfg.AuditSigningKeyFile, "audit-signing-key-file", "", "Ed25519 key (PEM) that signs audit checkpoints and exports; generated if missing, public key beside it as .pub (default <data-dir>/audit-signing-key.pem)")
	l.Duration(&cfg.AuditCheckpointInterval, "audit-checkpoint-interval", auditarchive.DefaultCheckpointInterval, "how often each region's audit chain head is signed, kept and published on PC_CHECKPOINTS (1s to 24h; 0 turns it off on this replica)")
	l.Duration(&cfg.AnomalyCheckInterval, "anomaly-check-interval", anomaly.DefaultInterval, "how often the anomaly rules are checked (1s to 10m; 0 turns the detector off on this replica)")
	l.String(&cfg.AlertWebhookURL, "alert-webhook-url", "", "URL that receives every anomaly alert as a signed POST, unless its rule names its own")
	l.String(&cfg.AlertWebhookSecretFile, "alert-webhook-secret-file", "", "file holding the HMAC-SHA-256 key (at least 16 bytes) that signs alert webhooks")
	l.Bool(&cfg.AlertWebhookAllowPrivate, "alert-webhook-allow-private", false, "development only: let alert webhooks reach private, loopback, link-local and CGNAT addresses")
	l.String(&cfg.OpenAIAdminURL, "openai-admin-url", rotator.DefaultOpenAIAdminURL, "base URL of OpenAI's organization admin API, where the openai_admin minter sends the admin key (https; http only to a loopback host)")
	l.Duration(&cfg.PolicyLagAlertAfter, "policy-lag-alert-after", DefaultPolicyLagAlertAfter, "raise a policy_lag alert when a worker's policy has been behind the published version this long (1s to 24h; 0 turns it off)")
	l.Duration(&cfg.AdminTokenMaxTTL, "admin-token-max-ttl", adminapi.DefaultTokenMaxTTL, "the longest expiry an admin API token may be given (1h to 8760h)")
	l.String(&cfg.TrustedProxies, "trusted-proxies", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For names the client (empty: none)")
	l.String(&cfg.PublicURL, "public-url", "", "the control plane's URL as browsers reach it, for the OIDC redirect (default http://<listen address>)")
	l.String(&cfg.OIDC.Issuer, "oidc-issuer", "", "issuer URL of the OIDC identity provider people sign in with; empty: no sign-in, API tokens only")
	l.String(&cfg.OIDC.ClientID, "oidc-client-id", "", "the control plane's OIDC client id")
	l.String(&cfg.OIDC.ClientSecretFile, "oidc-client-secret-file", "", "file holding the OIDC client secret (readable by its owner only)")
	l.String(&cfg.OIDC.Scopes, "oidc-scopes", "email,profile,groups", "scopes asked for besides openid, comma-separated")
	l.String(&cfg.OIDC.RoleClaim, "oidc-role-claim", "groups", "the ID token claim whose values oidc-role-map maps to roles")
	l.String(&cfg.OIDC.RoleMap, "oidc-role-map", "", "value=role[:tenant],… e.g. portcullis-admins=admin,acme-ops=tenant_admin:acme")
	l.String(&cfg.OIDC.NameClaim, "oidc-name-claim", "email", "the ID token claim that names a person's principal (then preferred_username, email, sub)")
	l.Duration(&cfg.OIDC.IdleTimeout, "session-idle-timeout", signin.DefaultIdleTimeout, "a console session unused this long ends (1m to 24h)")
	l.Duration(&cfg.OIDC.MaxAge, "session-max-age", signin.DefaultMaxAge, "a console session ends this long after sign-in (5m to 720h)")
	l.Duration(&cfg.OIDC.CLITokenTTL, "cli-token-ttl", signin.DefaultCLITokenTTL, "the life of the API token portcullis login gets (5m to 720h)")
	l.String(&cfg.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// LoadConfig reads the configuration from defaults, then the environment (through
// getenv), then args, and validates it, reporting every problem at once. It returns
// the positional arguments left after the flags (a subcommand, for instance). Usage
// text goes to stderr.
func LoadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, []string, error) {
	var cfg Config
	l := config.NewLoader("controlplane", stderr)
	Flags(l, &cfg)
	rest, err := l.Parse(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		return Config{}, nil, err
	}
	// A value that did not parse keeps its default, so validating anyway reports the
	// remaining problems in the same error without repeating that one.
	if err := errors.Join(err, cfg.Validate()); err != nil {
		return Config{}, nil, err
	}
	return cfg, rest, nil
}

// Validate reports every invalid key of c together, naming each key and its value
// (with any password redacted).
func (c Config) Validate() error {
	var p config.Problems
	if c.DatabaseURL == "" {
		p.Add("database-url", "", "required: a PostgreSQL URL such as postgres://user@127.0.0.1:5432/portcullis")
	} else if reason := checkDatabaseURL(c.DatabaseURL); reason != "" {
		p.Add("database-url", redactURL(c.DatabaseURL), reason)
	}
	if reason := checkHostPort(c.Listen); reason != "" {
		p.Add("listen", c.Listen, reason)
	}
	if reason := httpmetrics.CheckListen(c.MetricsListen); reason != "" {
		p.Add(httpmetrics.KeyListen, c.MetricsListen, reason)
	}
	if c.NATSURL == "" {
		if reason := checkHostPort(c.EmbeddedNATSListen); reason != "" {
			p.Add("embedded-nats-listen", c.EmbeddedNATSListen, reason)
		}
		const embedded = "applies only with nats-url; the embedded nats-server needs no credentials or TLS"
		if c.NATSCreds != "" {
			p.Add(natsconn.KeyCreds, c.NATSCreds, embedded)
		}
		if c.NATSCAFile != "" {
			p.Add(natsconn.KeyCAFile, c.NATSCAFile, embedded)
		}
		if c.NATSCertFile != "" || c.NATSKeyFile != "" {
			p.Add(natsconn.KeyCertFile, c.NATSCertFile, embedded)
		}
		if c.NATSReplicas != 1 {
			p.Add("nats-replicas", c.NATSReplicas, "must be 1 without nats-url: the embedded nats-server is a single node")
		}
	} else {
		for _, u := range strings.Split(c.NATSURL, ",") {
			if reason := checkNATSURL(strings.TrimSpace(u)); reason != "" {
				p.Add("nats-url", redactURL(strings.TrimSpace(u)), reason)
			}
		}
		c.natsOptions(c.NATSURL).Validate(&p)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		p.Add("data-dir", c.DataDir, "required")
	}
	if c.IssuerURL != "" {
		if reason := checkIssuerURL(c.IssuerURL); reason != "" {
			p.Add("issuer-url", c.IssuerURL, reason)
		}
	}
	if c.PublishInterval < time.Second || c.PublishInterval > time.Hour {
		p.Add("publish-interval", c.PublishInterval, "must be between 1s and 1h")
	}
	if c.NATSURL != "" && (c.NATSReplicas < 1 || c.NATSReplicas > maxNATSReplicas) {
		p.Add("nats-replicas", c.NATSReplicas, fmt.Sprintf("must be from 1 to %d", maxNATSReplicas))
	}
	c.Vault.Check(&p)
	if c.RotationCheckInterval != 0 && (c.RotationCheckInterval < time.Second || c.RotationCheckInterval > time.Hour) {
		p.Add("rotation-check-interval", c.RotationCheckInterval, "must be between 1s and 1h (0 means the default)")
	}
	if c.KeyDir != "" && (!filepath.IsAbs(c.KeyDir) || filepath.Clean(c.KeyDir) == "/") {
		p.Add("key-dir", c.KeyDir, "must be an absolute directory path other than /")
	}
	if c.WorkerTTL < minWorkerTTL || c.WorkerTTL > maxWorkerTTL {
		p.Add("worker-ttl", c.WorkerTTL, fmt.Sprintf("must be between %v and %v", minWorkerTTL, maxWorkerTTL))
	}
	if c.AnomalyCheckInterval != 0 && (c.AnomalyCheckInterval < time.Second || c.AnomalyCheckInterval > 10*time.Minute) {
		p.Add("anomaly-check-interval", c.AnomalyCheckInterval, "must be between 1s and 10m, or 0 to turn the detector off")
	}
	if reason := checkSigningKeyFile(c.AuditSigningKeyFile); reason != "" {
		p.Add("audit-signing-key-file", c.AuditSigningKeyFile, reason)
	}
	if c.AuditCheckpointInterval != 0 && (c.AuditCheckpointInterval < time.Second || c.AuditCheckpointInterval > 24*time.Hour) {
		p.Add("audit-checkpoint-interval", c.AuditCheckpointInterval, "must be between 1s and 24h, or 0 to sign no checkpoints at intervals on this replica")
	}
	if c.AlertWebhookURL != "" {
		if reason := alerting.CheckURL(c.AlertWebhookURL, c.AlertWebhookAllowPrivate); reason != "" {
			p.Add("alert-webhook-url", "(not shown: it may hold a secret)", reason)
		}
		if c.AlertWebhookSecretFile == "" {
			p.Add("alert-webhook-secret-file", "", "required with alert-webhook-url: webhooks are always signed")
		}
	}
	if c.OpenAIAdminURL != "" {
		if reason := rotator.CheckAdminURL(c.OpenAIAdminURL); reason != "" {
			p.Add("openai-admin-url", redactURL(c.OpenAIAdminURL), reason)
		}
	}
	if c.PolicyLagAlertAfter != 0 && (c.PolicyLagAlertAfter < time.Second || c.PolicyLagAlertAfter > 24*time.Hour) {
		p.Add("policy-lag-alert-after", c.PolicyLagAlertAfter, "must be between 1s and 24h, or 0 to turn the policy lag alert off")
	}
	if c.AdminTokenMaxTTL != 0 && (c.AdminTokenMaxTTL < time.Hour || c.AdminTokenMaxTTL > 365*24*time.Hour) {
		p.Add("admin-token-max-ttl", c.AdminTokenMaxTTL, "must be between 1h and 8760h (a year)")
	}
	for _, cidr := range c.trustedProxies() {
		if _, err := parseCIDR(cidr); err != nil {
			p.Add("trusted-proxies", cidr, "must be a CIDR, e.g. 10.0.0.0/8, or an address")
		}
	}
	if c.PublicURL != "" {
		if reason := checkIssuerURL(c.PublicURL); reason != "" {
			p.Add("public-url", c.PublicURL, reason)
		}
	}
	c.OIDC.check(&p, c.PublicURL)
	if !logging.ValidLevel(c.LogLevel) {
		p.Add("log-level", c.LogLevel, "must be debug, info, warn or error")
	}
	return p.Err()
}

// natsOptions are the options to connect to url, the configured or the embedded one.
func (c Config) natsOptions(url string) natsconn.Options {
	return natsconn.Options{URL: url, CredsFile: c.NATSCreds, CAFile: c.NATSCAFile,
		CertFile: c.NATSCertFile, KeyFile: c.NATSKeyFile, Name: "portcullis-controlplane"}
}

func checkHostPort(s string) string {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "must be host:port, e.g. 127.0.0.1:8080"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "port must be a number from 0 to 65535"
	}
	return ""
}

func checkDatabaseURL(s string) string {
	if !strings.Contains(s, "://") {
		if strings.Contains(s, "=") {
			return "" // a libpq keyword/value string, e.g. "host=127.0.0.1 dbname=portcullis"
		}
		return "must be a postgres:// URL or a keyword=value connection string"
	}
	u, err := url.Parse(s)
	if err != nil {
		return "not a valid URL"
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "scheme must be postgres or postgresql"
	}
	return ""
}

func checkNATSURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "must be a URL such as nats://127.0.0.1:4222"
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
		return ""
	}
	return "scheme must be nats, tls, ws or wss"
}

func checkIssuerURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "must be an absolute http(s) URL"
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "must not carry user info, a query or a fragment"
	}
	return ""
}

// redactURL hides the password of a URL (or keyword=value string) so that an error
// message can show the rest of it.
func redactURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err == nil && u.User != nil:
		return u.Redacted()
	case err == nil && !strings.Contains(s, "password"):
		return s
	case err != nil && !strings.ContainsAny(s, "@=") && !strings.Contains(s, "password"):
		return s
	}
	return "(redacted: it may hold a password)"
}

// issuerFor derives the dev issuer URL from the address the server bound to, using a
// loopback host when it bound to all interfaces.
func issuerFor(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("http://%s", net.JoinHostPort(host, port))
}

// trustedProxies lists the CIDRs of trusted-proxies.
func (c Config) trustedProxies() []string {
	var out []string
	for _, s := range strings.Split(c.TrustedProxies, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// parseCIDR reads a CIDR, or an address as the network of that address alone.
func parseCIDR(s string) (*net.IPNet, error) {
	if ip := net.ParseIP(s); ip != nil {
		bits := 8 * len(ip.To16())
		if ip4 := ip.To4(); ip4 != nil {
			ip, bits = ip4, 32
		}
		return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}, nil
	}
	_, n, err := net.ParseCIDR(s)
	return n, err
}

// check records the problems of the sign-in's configuration.
func (o OIDCConfig) check(p *config.Problems, publicURL string) {
	if o.IdleTimeout != 0 && (o.IdleTimeout < time.Minute || o.IdleTimeout > 24*time.Hour) {
		p.Add("session-idle-timeout", o.IdleTimeout, "must be between 1m and 24h")
	}
	if o.MaxAge != 0 && (o.MaxAge < 5*time.Minute || o.MaxAge > 720*time.Hour) {
		p.Add("session-max-age", o.MaxAge, "must be between 5m and 720h")
	}
	if o.CLITokenTTL != 0 && (o.CLITokenTTL < 5*time.Minute || o.CLITokenTTL > 720*time.Hour) {
		p.Add("cli-token-ttl", o.CLITokenTTL, "must be between 5m and 720h")
	}
	if o.Issuer == "" {
		return
	}
	if reason := checkIssuerURL(o.Issuer); reason != "" {
		p.Add("oidc-issuer", o.Issuer, reason)
	}
	if o.ClientID == "" {
		p.Add("oidc-client-id", "", "required with oidc-issuer")
	}
	if o.ClientSecretFile == "" {
		p.Add("oidc-client-secret-file", "", "required with oidc-issuer")
	}
	if o.RoleClaim == "" {
		p.Add("oidc-role-claim", "", "required with oidc-issuer")
	}
	if strings.TrimSpace(o.RoleMap) == "" {
		p.Add("oidc-role-map", "", "required with oidc-issuer: which claim values give which roles, e.g. portcullis-admins=admin")
	} else if _, err := signin.ParseRoleMap(o.RoleMap); err != nil {
		p.Add("oidc-role-map", o.RoleMap, err.Error())
	}
	if publicURL != "" {
		if u, err := url.Parse(publicURL); err == nil && u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
			p.Add("public-url", publicURL, "must be https with oidc-issuer: session cookies are Secure (plain http only on a loopback host)")
		}
	}
}

// isLoopbackHost reports whether host is localhost or a loopback address.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
