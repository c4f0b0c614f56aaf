// Package gatewayconfig reads gateway.yaml, the declarative configuration that
// `portcullis apply` sends to the control plane: the seed document's blocks as its
// users write them (llm_providers, gateway, logging, anomaly_detection,
// upstream_providers) and Portcullis's own resources, each keyed by its name with the
// body the admin API takes. It turns a file into the entities it means, each with
// where in the file it came from, so that a problem found later (by the admin API's
// validation) is reported at its line and column. It validates only what the file
// format itself decides; the entities' own rules stay the admin API's.
package gatewayconfig

// APIVersion is the only version of the file format.
const APIVersion = "portcullis/v1"

// File is gateway.yaml. Every block is optional but apiVersion.
type File struct {
	APIVersion string `yaml:"apiVersion" json:"apiVersion"`
	// Region is where the seed's blocks, which name no region, put a provider's
	// deployment when the file declares none for it under deployments.
	Region string `yaml:"region,omitempty" json:"region,omitempty"`

	// The seed's blocks.
	LLMProviders      map[string]LLMProvider      `yaml:"llm_providers,omitempty" json:"llm_providers,omitempty"`
	Gateway           *Gateway                    `yaml:"gateway,omitempty" json:"gateway,omitempty"`
	Logging           *Logging                    `yaml:"logging,omitempty" json:"logging,omitempty"`
	AnomalyDetection  []AnomalyDetection          `yaml:"anomaly_detection,omitempty" json:"anomaly_detection,omitempty"`
	UpstreamProviders map[string]UpstreamProvider `yaml:"upstream_providers,omitempty" json:"upstream_providers,omitempty"`

	// Portcullis's own resources: name → the admin API's body of it (the key field
	// may be left out).
	Tenants        map[string]Body `yaml:"tenants,omitempty" json:"tenants,omitempty"`
	Tiers          map[string]Body `yaml:"tiers,omitempty" json:"tiers,omitempty"`
	ResidencyRules map[string]Body `yaml:"residency_rules,omitempty" json:"residency_rules,omitempty"`
	Providers      map[string]Body `yaml:"providers,omitempty" json:"providers,omitempty"`
	Deployments    map[string]Body `yaml:"deployments,omitempty" json:"deployments,omitempty"`
	Models         map[string]Body `yaml:"models,omitempty" json:"models,omitempty"`
	FallbackMaps   map[string]Body `yaml:"fallback_maps,omitempty" json:"fallback_maps,omitempty"`
	Clients        map[string]Body `yaml:"clients,omitempty" json:"clients,omitempty"`
	AnomalyRules   map[string]Body `yaml:"anomaly_rules,omitempty" json:"anomaly_rules,omitempty"`
	// Settings holds the gateway settings, under the one key "gateway".
	Settings map[string]Body `yaml:"settings,omitempty" json:"settings,omitempty"`
	// Principals are people and service accounts with their role bindings (the
	// manual ones); apply creates and changes them, never deletes one.
	Principals map[string]Body `yaml:"principals,omitempty" json:"principals,omitempty"`
}

// Body is one resource as the admin API takes it in JSON.
type Body = map[string]any

// LLMProvider is the seed's llm_providers.<provider>: where its key comes from and
// how it rotates.
type LLMProvider struct {
	KeySource string `yaml:"key_source" json:"key_source"`
	// VaultPath is a Vault key's path; KeyPath is the path of a key_source file
	// (development only), which the seed has no word for.
	VaultPath            string   `yaml:"vault_path,omitempty" json:"vault_path,omitempty"`
	KeyPath              string   `yaml:"key_path,omitempty" json:"key_path,omitempty"`
	RotationIntervalDays *int     `yaml:"rotation_interval_days,omitempty" json:"rotation_interval_days,omitempty"`
	RotationOverlapHours *float64 `yaml:"rotation_overlap_hours,omitempty" json:"rotation_overlap_hours,omitempty"`
}

// Gateway is the seed's gateway block.
type Gateway struct {
	Auth            *Auth           `yaml:"auth,omitempty" json:"auth,omitempty"`
	PerClientLimits map[string]Body `yaml:"per_client_limits,omitempty" json:"per_client_limits,omitempty"`
}

// Auth is the seed's gateway.auth.
type Auth struct {
	Method        string         `yaml:"method" json:"method"`
	JWTIssuer     string         `yaml:"jwt_issuer,omitempty" json:"jwt_issuer,omitempty"`
	JWTAudience   string         `yaml:"jwt_audience,omitempty" json:"jwt_audience,omitempty"`
	RequireClaims []string       `yaml:"require_claims,omitempty" json:"require_claims,omitempty"`
	OnAuthFailure *OnAuthFailure `yaml:"on_auth_failure,omitempty" json:"on_auth_failure,omitempty"`
}

// OnAuthFailure is the seed's gateway.auth.on_auth_failure.
type OnAuthFailure struct {
	Action       string `yaml:"action" json:"action"`
	ResponseCode int    `yaml:"response_code,omitempty" json:"response_code,omitempty"`
	Log          *bool  `yaml:"log,omitempty" json:"log,omitempty"`
}

// Logging is the seed's logging block: what the audit trail keeps.
type Logging struct {
	Request     *RequestLogging  `yaml:"request,omitempty" json:"request,omitempty"`
	Response    *ResponseLogging `yaml:"response,omitempty" json:"response,omitempty"`
	Format      string           `yaml:"format,omitempty" json:"format,omitempty"`
	Destination string           `yaml:"destination,omitempty" json:"destination,omitempty"`
}

// RequestLogging is the seed's logging.request.
type RequestLogging struct {
	LogMetadata   *bool    `yaml:"log_metadata,omitempty" json:"log_metadata,omitempty"`
	LogPromptHash *bool    `yaml:"log_prompt_hash,omitempty" json:"log_prompt_hash,omitempty"`
	LogPromptRaw  *bool    `yaml:"log_prompt_raw,omitempty" json:"log_prompt_raw,omitempty"`
	LogHeaders    []string `yaml:"log_headers,omitempty" json:"log_headers,omitempty"`
}

// ResponseLogging is the seed's logging.response.
type ResponseLogging struct {
	LogMetadata     *bool `yaml:"log_metadata,omitempty" json:"log_metadata,omitempty"`
	LogResponseHash *bool `yaml:"log_response_hash,omitempty" json:"log_response_hash,omitempty"`
	LogResponseRaw  *bool `yaml:"log_response_raw,omitempty" json:"log_response_raw,omitempty"`
	LogErrorDetails *bool `yaml:"log_error_details,omitempty" json:"log_error_details,omitempty"`
}

// AnomalyDetection is one rule of the seed's anomaly_detection list.
type AnomalyDetection struct {
	Rule      string `yaml:"rule" json:"rule"`
	Condition string `yaml:"condition,omitempty" json:"condition,omitempty"`
	Action    string `yaml:"action,omitempty" json:"action,omitempty"`
}

// UpstreamProvider is the seed's upstream_providers.<provider>: how its deployments
// reach it, and its self-hosted fallback.
type UpstreamProvider struct {
	BaseURL            string              `yaml:"base_url,omitempty" json:"base_url,omitempty"`
	TLS                *TLS                `yaml:"tls,omitempty" json:"tls,omitempty"`
	TimeoutSeconds     *int                `yaml:"timeout_seconds,omitempty" json:"timeout_seconds,omitempty"`
	Retry              Body                `yaml:"retry,omitempty" json:"retry,omitempty"`
	CircuitBreaker     Body                `yaml:"circuit_breaker,omitempty" json:"circuit_breaker,omitempty"`
	SelfHostedFallback *SelfHostedFallback `yaml:"self_hosted_fallback,omitempty" json:"self_hosted_fallback,omitempty"`
	Proxy              *Proxy              `yaml:"proxy,omitempty" json:"proxy,omitempty"`
}

// TLS is an upstream's TLS settings. PinSHA256 takes one pin or a list.
type TLS struct {
	Verify     *bool     `yaml:"verify,omitempty" json:"verify,omitempty"`
	MinVersion string    `yaml:"min_version,omitempty" json:"min_version,omitempty"`
	PinSHA256  StringSet `yaml:"pin_sha256,omitempty" json:"pin_sha256,omitempty"`
	CAFile     string    `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
}

// SelfHostedFallback is the seed's self_hosted_fallback: a self-hosted upstream that
// serves model_map's models when the provider fails.
type SelfHostedFallback struct {
	// Provider names the self-hosted provider (default "ollama").
	Provider    string            `yaml:"provider,omitempty" json:"provider,omitempty"`
	BaseURL     string            `yaml:"base_url" json:"base_url"`
	ModelMap    map[string]string `yaml:"model_map" json:"model_map"`
	EnabledWhen string            `yaml:"enabled_when,omitempty" json:"enabled_when,omitempty"`
}

// Proxy is the seed's proxy block.
type Proxy struct {
	HTTPProxy  string   `yaml:"http_proxy,omitempty" json:"http_proxy,omitempty"`
	HTTPSProxy string   `yaml:"https_proxy,omitempty" json:"https_proxy,omitempty"`
	NoProxy    []string `yaml:"no_proxy,omitempty" json:"no_proxy,omitempty"`
}

// StringSet is a list of strings that YAML may also give as one string.
type StringSet []string

// UnmarshalYAML takes a string or a list of strings.
func (s *StringSet) UnmarshalYAML(unmarshal func(any) error) error {
	var one string
	if err := unmarshal(&one); err == nil {
		*s = StringSet{one}
		return nil
	}
	var many []string
	if err := unmarshal(&many); err != nil {
		return err
	}
	*s = many
	return nil
}
