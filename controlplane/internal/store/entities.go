package store

import (
	"time"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// The tables of the ten policy entities. Column names match the JSON fields of the
// shared/policy types, except where a nested object is flattened (tls_verify is tls.verify).

var tenants = (&table[policy.Tenant]{
	name:  "tenants",
	key:   "name",
	keyOf: func(e *policy.Tenant) *string { return &e.Name },
	scope: "name = ANY(%s)",
	columns: []column[policy.Tenant]{
		col("display_name", func(e *policy.Tenant) *string { return &e.DisplayName }),
		col("guardrails", func(e *policy.Tenant) **policy.Guardrails { return &e.Guardrails }),
	},
}).init()

var tiers = (&table[policy.Tier]{
	name:  "tiers",
	key:   "name",
	keyOf: func(e *policy.Tier) *string { return &e.Name },
	columns: []column[policy.Tier]{
		col("requests_per_minute", func(e *policy.Tier) *int64 { return &e.RequestsPerMinute }),
		col("tokens_per_hour", func(e *policy.Tier) *int64 { return &e.TokensPerHour }),
		col("max_concurrent_requests", func(e *policy.Tier) *int64 { return &e.MaxConcurrentRequests }),
		arrayCol("allowed_models", func(e *policy.Tier) *[]string { return &e.AllowedModels }),
		arrayCol("allowed_operations", func(e *policy.Tier) *[]string { return &e.AllowedOperations }),
		col("default_max_tokens", func(e *policy.Tier) *int64 { return &e.DefaultMaxTokens }),
		col("max_choices", func(e *policy.Tier) *int64 { return &e.MaxChoices }),
		col("max_output_tokens", func(e *policy.Tier) *int64 { return &e.MaxOutputTokens }),
		col("guardrails", func(e *policy.Tier) *policy.Guardrails { return &e.Guardrails }),
	},
}).init()

var clients = (&table[policy.Client]{
	name:       "clients",
	key:        "client_id",
	keyOf:      func(e *policy.Client) *string { return &e.ClientID },
	scope:      "tenant = ANY(%s)",
	scopeField: "tenant",
	columns: []column[policy.Client]{
		col("tenant", func(e *policy.Client) *string { return &e.Tenant }),
		col("tier", func(e *policy.Client) *string { return &e.Tier }),
		nullableCol("residency", func(e *policy.Client) *string { return &e.Residency }),
		col("enabled", func(e *policy.Client) *bool { return &e.Enabled }),
		col("guardrails", func(e *policy.Client) **policy.Guardrails { return &e.Guardrails }),
	},
	refs: map[string]string{
		"clients_tenant_fkey":    "tenant",
		"clients_tier_fkey":      "tier",
		"clients_residency_fkey": "residency",
	},
}).init()

var providers = (&table[policy.Provider]{
	name:  "providers",
	key:   "name",
	keyOf: func(e *policy.Provider) *string { return &e.Name },
	columns: []column[policy.Provider]{
		col("kind", func(e *policy.Provider) *string { return &e.Kind }),
	},
}).init()

var deployments = (&table[policy.Deployment]{
	name:  "deployments",
	key:   "name",
	keyOf: func(e *policy.Deployment) *string { return &e.Name },
	columns: []column[policy.Deployment]{
		col("provider", func(e *policy.Deployment) *string { return &e.Provider }),
		col("region", func(e *policy.Deployment) *string { return &e.Region }),
		col("kind", func(e *policy.Deployment) *string { return &e.Kind }),
		col("base_url", func(e *policy.Deployment) *string { return &e.BaseURL }),
		col("key_source", func(e *policy.Deployment) *string { return &e.KeySource }),
		col("key_path", func(e *policy.Deployment) *string { return &e.KeyPath }),
		col("rotation_interval_days", func(e *policy.Deployment) *int { return &e.RotationIntervalDays }),
		col("rotation_overlap_hours", func(e *policy.Deployment) *float64 { return &e.RotationOverlapHours }),
		col("minter", func(e *policy.Deployment) *string { return &e.Minter }),
		col("admin_key_path", func(e *policy.Deployment) *string { return &e.AdminKeyPath }),
		col("admin_project_id", func(e *policy.Deployment) *string { return &e.AdminProjectID }),
		col("tls_verify", func(e *policy.Deployment) *bool { return &e.TLS.Verify }),
		col("tls_min_version", func(e *policy.Deployment) *string { return &e.TLS.MinVersion }),
		arrayCol("tls_pin_sha256", func(e *policy.Deployment) *[]string { return &e.TLS.PinSHA256 }),
		col("tls_ca_file", func(e *policy.Deployment) *string { return &e.TLS.CAFile }),
		col("timeout_seconds", func(e *policy.Deployment) *int { return &e.TimeoutSeconds }),
		col("connect_timeout_seconds", func(e *policy.Deployment) *int { return &e.ConnectTimeoutSeconds }),
		col("total_timeout_seconds", func(e *policy.Deployment) *int { return &e.TotalTimeoutSeconds }),
		col("retry_max_attempts", func(e *policy.Deployment) *int { return &e.Retry.MaxAttempts }),
		col("retry_backoff", func(e *policy.Deployment) *string { return &e.Retry.Backoff }),
		col("breaker_failure_threshold", func(e *policy.Deployment) *int { return &e.CircuitBreaker.FailureThreshold }),
		col("breaker_reset_timeout_seconds", func(e *policy.Deployment) *int { return &e.CircuitBreaker.ResetTimeoutSeconds }),
		col("breaker_half_open_max_requests", func(e *policy.Deployment) *int { return &e.CircuitBreaker.HalfOpenMaxRequests }),
		col("enabled", func(e *policy.Deployment) *bool { return &e.Enabled }),
	},
	refs: map[string]string{"deployments_provider_fkey": "provider"},
}).init()

var models = (&table[policy.Model]{
	name:   "models",
	key:    "id",
	keyOf:  func(e *policy.Model) *string { return &e.ID },
	newKey: newID,
	columns: []column[policy.Model]{
		col("name", func(e *policy.Model) *string { return &e.Name }),
		col("deployment", func(e *policy.Model) *string { return &e.Deployment }),
		col("upstream_model", func(e *policy.Model) *string { return &e.UpstreamModel }),
		col("input_usd_per_1m", func(e *policy.Model) *float64 { return &e.InputUSDPer1M }),
		col("output_usd_per_1m", func(e *policy.Model) *float64 { return &e.OutputUSDPer1M }),
		col("weight", func(e *policy.Model) *int { return &e.Weight }),
	},
	order:   []string{"name", "deployment"},
	orderOf: func(e *policy.Model) []string { return []string{e.Name, e.Deployment} },
	refs:    map[string]string{"models_deployment_fkey": "deployment"},
	unique:  map[string][]string{"models_name_deployment_key": {"name", "deployment"}},
}).init()

var residencyRules = (&table[policy.ResidencyRule]{
	name:  "residency_rules",
	key:   "residency",
	keyOf: func(e *policy.ResidencyRule) *string { return &e.Residency },
	columns: []column[policy.ResidencyRule]{
		arrayCol("allowed_regions", func(e *policy.ResidencyRule) *[]string { return &e.AllowedRegions }),
		col("endpoint_url", func(e *policy.ResidencyRule) *string { return &e.EndpointURL }),
	},
}).init()

var fallbackMaps = (&table[policy.FallbackMap]{
	name:   "fallback_maps",
	key:    "id",
	keyOf:  func(e *policy.FallbackMap) *string { return &e.ID },
	newKey: newID,
	columns: []column[policy.FallbackMap]{
		col("provider", func(e *policy.FallbackMap) *string { return &e.Provider }),
		col("from_model", func(e *policy.FallbackMap) *string { return &e.FromModel }),
		col("to_model", func(e *policy.FallbackMap) *string { return &e.ToModel }),
	},
	order:   []string{"provider", "from_model"},
	orderOf: func(e *policy.FallbackMap) []string { return []string{e.Provider, e.FromModel} },
	refs:    map[string]string{"fallback_maps_provider_fkey": "provider"},
	unique:  map[string][]string{"fallback_maps_provider_from_model_key": {"provider", "from_model"}},
}).init()

var revokedTokens = (&table[policy.RevokedToken]{
	name:  "revoked_tokens",
	key:   "jti",
	keyOf: func(e *policy.RevokedToken) *string { return &e.JTI },
	columns: []column[policy.RevokedToken]{
		col("expires_at", func(e *policy.RevokedToken) *time.Time { return &e.ExpiresAt }),
		col("reason", func(e *policy.RevokedToken) *string { return &e.Reason }),
	},
	live: "expires_at > now()",
}).init()

var limitOverrides = (&table[policy.LimitOverride]{
	name:  "limit_overrides",
	key:   "client_id",
	keyOf: func(e *policy.LimitOverride) *string { return &e.ClientID },
	scope: "limit_overrides.client_id IN (SELECT client_id FROM clients WHERE tenant = ANY(%s))",
	columns: []column[policy.LimitOverride]{
		optionalCol("requests_per_minute", func(e *policy.LimitOverride) *int64 { return &e.RequestsPerMinute }),
		optionalCol("tokens_per_hour", func(e *policy.LimitOverride) *int64 { return &e.TokensPerHour }),
		optionalCol("max_concurrent_requests", func(e *policy.LimitOverride) *int64 { return &e.MaxConcurrentRequests }),
		col("expires_at", func(e *policy.LimitOverride) *time.Time { return &e.ExpiresAt }),
		col("reason", func(e *policy.LimitOverride) *string { return &e.Reason }),
		col("set_by", func(e *policy.LimitOverride) *string { return &e.SetBy }),
	},
	refs:     map[string]string{"limit_overrides_client_id_fkey": "client_id"},
	live:     "limit_overrides.expires_at > now()",
	liveOnly: true,
}).init()

var gatewaySettings = (&table[policy.GatewaySettings]{
	name:  "gateway_settings",
	key:   "name",
	keyOf: func(e *policy.GatewaySettings) *string { return &e.Name },
	columns: []column[policy.GatewaySettings]{
		col("auth", func(e *policy.GatewaySettings) *policy.AuthSettings { return &e.Auth }),
		col("audit_headers", func(e *policy.GatewaySettings) *[]string { return &e.AuditHeaders }),
		col("fallbacks", func(e *policy.GatewaySettings) *[]policy.FallbackTrigger { return &e.Fallbacks }),
		col("proxies", func(e *policy.GatewaySettings) *[]policy.RegionProxy { return &e.Proxies }),
	},
}).init()
