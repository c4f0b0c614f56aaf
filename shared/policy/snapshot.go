// Package policy defines the policy snapshot: the whole, versioned view of tenants,
// clients, tiers, providers, deployments, models, residency rules, fallback maps and
// revoked tokens that the control plane publishes to the PC_POLICY KV bucket and every
// data plane compiles into lookup tables.
//
// A snapshot is encoded as gzip-compressed JSON (see Encode) so that a policy for tens
// of thousands of clients stays well under NATS's default 1 MB payload limit.
package policy

import "time"

// SchemaVersion is the snapshot schema this build reads and writes. A reader rejects
// any other version and keeps its last good snapshot.
const SchemaVersion = 1

// Operation names. A request performs exactly one of OpChat, OpTextCompletion,
// OpMessages and OpEmbeddings; a tier's AllowedOperations may also list
// OpCompletion, which covers every text-generation operation.
const (
	// OpCompletion is all text generation: OpChat, OpTextCompletion and OpMessages.
	// It is what the seed's tiers mean by "completion".
	OpCompletion     = "completion"
	OpChat           = "chat"            // POST /v1/chat/completions
	OpTextCompletion = "text_completion" // POST /v1/completions, the legacy endpoint
	OpMessages       = "messages"        // POST /v1/messages, Anthropic's Messages API
	OpEmbeddings     = "embeddings"      // POST /v1/embeddings
)

// Operations lists every name a tier's AllowedOperations may hold.
var Operations = []string{OpCompletion, OpChat, OpTextCompletion, OpMessages, OpEmbeddings}

// DefaultOperations is what a tier allows when it names no operations: all of them.
var DefaultOperations = []string{OpCompletion, OpEmbeddings}

// TextGeneration lists the operations OpCompletion covers.
var TextGeneration = []string{OpChat, OpTextCompletion, OpMessages}

// RequestOperations expands a tier's AllowedOperations into the request operations
// (OpChat, OpTextCompletion, OpMessages, OpEmbeddings) they allow: OpCompletion
// becomes every text-generation operation, other known names stand for themselves,
// and unknown names allow nothing. The result has no duplicates.
func RequestOperations(allowed []string) []string {
	out := make([]string, 0, len(TextGeneration)+1)
	add := func(op string) {
		for _, o := range out {
			if o == op {
				return
			}
		}
		out = append(out, op)
	}
	for _, op := range allowed {
		switch op {
		case OpCompletion:
			for _, g := range TextGeneration {
				add(g)
			}
		case OpChat, OpTextCompletion, OpMessages, OpEmbeddings:
			add(op)
		}
	}
	return out
}

// Provider kinds.
const (
	ProviderOpenAI    = "openai"
	ProviderAnthropic = "anthropic"
	ProviderOllama    = "ollama"
)

// ProviderKinds lists every provider kind.
var ProviderKinds = []string{ProviderOpenAI, ProviderAnthropic, ProviderOllama}

// Deployment kinds.
const (
	KindCloud      = "cloud"
	KindSelfHosted = "self_hosted"
)

// DeploymentKinds lists every deployment kind.
var DeploymentKinds = []string{KindCloud, KindSelfHosted}

// Key sources a deployment may name.
const (
	KeySourceNone         = "none"          // self-hosted upstreams that take no key
	KeySourceFile         = "file"          // dev only: the key is the content of KeyPath
	KeySourceVault        = "vault"         // KV v2 secret at KeyPath
	KeySourceVaultDynamic = "vault_dynamic" // a read of KeyPath returns a leased key
	KeySourceEnv          = "env"           // refused unless a dev flag allows it
)

// Minters: where a rotation's new key comes from.
const (
	MinterVaultVersion = "vault_version" // an operator or pipeline writes a new KV v2 version
	MinterOpenAIAdmin  = "openai_admin"  // OpenAI's admin API creates a project service account key
	MinterVaultDynamic = "vault_dynamic" // Vault leases a new key on each read
)

// Minters lists every minter.
var Minters = []string{MinterVaultVersion, MinterOpenAIAdmin, MinterVaultDynamic}

// KeySources lists every key source.
var KeySources = []string{KeySourceNone, KeySourceFile, KeySourceVault, KeySourceVaultDynamic, KeySourceEnv}

// Snapshot is the whole policy at one version. It is immutable once published.
type Snapshot struct {
	SchemaVersion int       `json:"schema_version"`
	Version       int64     `json:"version"` // strictly increasing across publishes
	GeneratedAt   time.Time `json:"generated_at"`

	Tenants        []Tenant        `json:"tenants"`
	Tiers          []Tier          `json:"tiers"`
	Clients        []Client        `json:"clients"`
	Providers      []Provider      `json:"providers"`
	Deployments    []Deployment    `json:"deployments"`
	Models         []Model         `json:"models"`
	ResidencyRules []ResidencyRule `json:"residency_rules"`
	FallbackMaps   []FallbackMap   `json:"fallback_maps"`
	RevokedTokens  []RevokedToken  `json:"revoked_tokens"`
	LimitOverrides []LimitOverride `json:"limit_overrides"`
	// Settings are the gateway-wide settings; nil leaves every data plane's own.
	Settings *GatewaySettings `json:"settings,omitempty"`
}

// Tenant is an organisation that owns clients.
type Tenant struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name,omitempty"`
	// Guardrails overrides the tiers' guardrail policy for the tenant's clients;
	// nil overrides nothing.
	Guardrails *Guardrails `json:"guardrails,omitempty"`
}

// Tier is a named set of limits and allowlists that clients are assigned to.
type Tier struct {
	Name                  string   `json:"name"`
	RequestsPerMinute     int64    `json:"requests_per_minute"`
	TokensPerHour         int64    `json:"tokens_per_hour"`
	MaxConcurrentRequests int64    `json:"max_concurrent_requests"`
	AllowedModels         []string `json:"allowed_models"`
	AllowedOperations     []string `json:"allowed_operations"` // names of Operations; see RequestOperations
	// DefaultMaxTokens is the output budget of a request that asks for none; 0 means
	// the gateway's own default. It is at most MaxOutputTokens when that is set.
	DefaultMaxTokens int64 `json:"default_max_tokens"`
	// MaxChoices is the most completions one request may ask for (n, or best_of for
	// legacy completions), from 1 to MaxChoicesLimit; 0 means no tier cap beyond the
	// gateway's own 1 to MaxChoicesLimit.
	MaxChoices int64 `json:"max_choices"`
	// MaxOutputTokens is the largest max_tokens (or max_completion_tokens) a request
	// may ask for; 0 means no cap.
	MaxOutputTokens int64 `json:"max_output_tokens"`
	// Guardrails is the tier's guardrail policy (docs/guardrails.md); empty: off.
	Guardrails Guardrails `json:"guardrails"`
}

// MaxChoicesLimit is the most completions (n, best_of) any request may ask for,
// whatever its tier.
const MaxChoicesLimit = 128

// Client is one calling application, identified by the client_id claim of its JWT.
type Client struct {
	ClientID string `json:"client_id"`
	Tenant   string `json:"tenant"`
	Tier     string `json:"tier"`
	// Residency names the client's residency rule; "" means no residency
	// restriction, which the admin API shows as ResidencyGlobal.
	Residency string `json:"residency,omitempty"`
	Enabled   bool   `json:"enabled"`
	// Guardrails overrides its tenant's and tier's guardrail policy; nil overrides
	// nothing.
	Guardrails *Guardrails `json:"guardrails,omitempty"`
}

// ResidencyGlobal is the residency an admin gives a client that may be served from
// any region. A snapshot stores it as "" (Client.Residency), and no residency rule
// may have this name.
const ResidencyGlobal = "global"

// Provider is an upstream LLM vendor or self-hosted runtime.
type Provider struct {
	Name string `json:"name"`
	Kind string `json:"kind"` // one of ProviderKinds
}

// Deployment is one reachable endpoint of a provider in a region.
type Deployment struct {
	Name      string `json:"name"`
	Provider  string `json:"provider"`
	Region    string `json:"region"`
	Kind      string `json:"kind"` // one of DeploymentKinds
	BaseURL   string `json:"base_url"`
	KeySource string `json:"key_source"` // one of KeySources
	KeyPath   string `json:"key_path,omitempty"`
	// RotationIntervalDays schedules the control plane's rotation of the key; 0 means
	// on demand only.
	RotationIntervalDays int `json:"rotation_interval_days"`
	// RotationOverlapHours is how long the previous key stays valid after a
	// rotation; fractions allowed.
	RotationOverlapHours float64 `json:"rotation_overlap_hours"`
	// Minter is where a rotation's new key comes from: one of Minters, or "" for a key
	// source that does not rotate.
	Minter string `json:"minter,omitempty"`
	// AdminKeyPath (openai_admin) is the Vault KV path of the provider admin key the
	// minter uses, and AdminProjectID the project whose service accounts hold the keys.
	AdminKeyPath   string `json:"admin_key_path,omitempty"`
	AdminProjectID string `json:"admin_project_id,omitempty"`
	TLS            TLS    `json:"tls"`
	TimeoutSeconds int    `json:"timeout_seconds"` // to the first byte of the answer
	// ConnectTimeoutSeconds bounds connecting (TCP and TLS); 0 means 10.
	ConnectTimeoutSeconds int `json:"connect_timeout_seconds,omitempty"`
	// TotalTimeoutSeconds bounds a whole attempt, streamed answer included; 0 means 600.
	TotalTimeoutSeconds int            `json:"total_timeout_seconds,omitempty"`
	Retry               Retry          `json:"retry"`
	CircuitBreaker      CircuitBreaker `json:"circuit_breaker"`
	Enabled             bool           `json:"enabled"`
}

// TLS is a deployment's upstream TLS policy.
type TLS struct {
	Verify     bool     `json:"verify"`
	MinVersion string   `json:"min_version,omitempty"` // "TLS1.2" or "TLS1.3"
	PinSHA256  []string `json:"pin_sha256,omitempty"`
	CAFile     string   `json:"ca_file,omitempty"`
}

// Retry is a deployment's retry policy.
type Retry struct {
	MaxAttempts int    `json:"max_attempts"`
	Backoff     string `json:"backoff"` // "exponential" or "constant"
}

// CircuitBreaker is a deployment's breaker policy.
type CircuitBreaker struct {
	FailureThreshold    int `json:"failure_threshold"`
	ResetTimeoutSeconds int `json:"reset_timeout_seconds"`
	// HalfOpenMaxRequests is how many probes a half-open breaker lets through; 0 means 1.
	HalfOpenMaxRequests int `json:"half_open_max_requests,omitempty"`
}

// Model maps a public model name to one deployment and the upstream's model name.
// A public name served by several deployments has one Model per deployment.
type Model struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	Deployment     string  `json:"deployment"`
	UpstreamModel  string  `json:"upstream_model"`
	InputUSDPer1M  float64 `json:"input_usd_per_1m"`
	OutputUSDPer1M float64 `json:"output_usd_per_1m"`
	// Weight is the deployment's share of the model's traffic among the healthy
	// deployments of its preference group; 0 makes it a standby.
	Weight int `json:"weight"`
}

// ResidencyRule lists the deployment regions a residency may be served from.
type ResidencyRule struct {
	Residency      string   `json:"residency"`
	AllowedRegions []string `json:"allowed_regions"`
	// EndpointURL is the data-plane URL that clients of this residency should call,
	// e.g. https://eu.gateway.example.com; "" if none is set. See EndpointURLProblem.
	EndpointURL string `json:"endpoint_url,omitempty"`
}

// FallbackMap maps a model served by Provider to a self-hosted model used when that
// provider is failing.
type FallbackMap struct {
	ID        string `json:"id"`
	Provider  string `json:"provider"`
	FromModel string `json:"from_model"`
	ToModel   string `json:"to_model"`
}

// RevokedToken is a JWT id that must be rejected until ExpiresAt.
type RevokedToken struct {
	JTI       string    `json:"jti"`
	ExpiresAt time.Time `json:"expires_at"`
	Reason    string    `json:"reason,omitempty"`
}

// LimitOverride replaces some of one client's tier limits until ExpiresAt, for
// example a throttle set by anomaly detection or a temporary raise for a customer.
// A zero limit field keeps the tier's value. Data planes ignore an override once
// ExpiresAt has passed, so it lifts itself without a new snapshot.
type LimitOverride struct {
	ClientID              string    `json:"client_id"`
	RequestsPerMinute     int64     `json:"requests_per_minute,omitempty"`
	TokensPerHour         int64     `json:"tokens_per_hour,omitempty"`
	MaxConcurrentRequests int64     `json:"max_concurrent_requests,omitempty"`
	ExpiresAt             time.Time `json:"expires_at"`
	Reason                string    `json:"reason,omitempty"`
	SetBy                 string    `json:"set_by,omitempty"` // who or what set it, e.g. "admin" or "anomaly:token_spike"
}
