package adminapi

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// Upper bounds that keep settings sane (and inside their SQL integer columns).
const (
	maxTimeoutSeconds   = 3600
	maxRetryAttempts    = 10
	maxBreakerThreshold = 10000
	maxBreakerReset     = 86400
	maxPriceUSD         = 1e6
	maxWeight           = 1000
)

// retryBackoffs lists the retry backoff strategies a deployment may name.
var retryBackoffs = []string{"exponential", "constant"}

// tlsVersions lists the minimum TLS versions a deployment may name ("" means the default).
var tlsVersions = []string{"", "TLS1.2", "TLS1.3"}

func (a *API) tenants() *resource[policy.Tenant] {
	return newResource(a, "tenants", "tenant", a.st.Tenants(), slug,
		func() policy.Tenant { return policy.Tenant{} },
		func(r *report, t *policy.Tenant) {
			r.check("display_name", text(t.DisplayName, 200), "must be printable text of at most 200 characters")
			checkGuardrails(r, t.Guardrails)
		})
}

func (a *API) tiers() *resource[policy.Tier] {
	return newResource(a, "tiers", "tier", a.st.Tiers(), slug,
		func() policy.Tier { return policy.Tier{AllowedOperations: slices.Clone(policy.DefaultOperations)} },
		func(r *report, t *policy.Tier) {
			positive := func(field string, v int64) {
				r.check(field, v > 0, "must be a positive integer")
			}
			positive("requests_per_minute", t.RequestsPerMinute)
			positive("tokens_per_hour", t.TokensPerHour)
			positive("max_concurrent_requests", t.MaxConcurrentRequests)
			r.check("default_max_tokens", t.DefaultMaxTokens >= 0,
				"must be zero (no default cap) or a positive integer")
			r.check("max_choices", t.MaxChoices >= 0 && t.MaxChoices <= policy.MaxChoicesLimit,
				fmt.Sprintf("must be an integer from 1 to %d, or zero for no tier cap (the gateway's own 1 to %d)",
					policy.MaxChoicesLimit, policy.MaxChoicesLimit))
			r.check("max_output_tokens", t.MaxOutputTokens >= 0, "must be zero (no cap) or a positive integer")
			r.check("default_max_tokens", t.MaxOutputTokens <= 0 || t.DefaultMaxTokens <= t.MaxOutputTokens,
				fmt.Sprintf("must be at most max_output_tokens (%d)", t.MaxOutputTokens))
			msg := eachOf(t.AllowedModels, modelName.valid, "model names")
			r.check("allowed_models", msg == "", msg)
			msg = eachOf(t.AllowedOperations, func(op string) bool { return slices.Contains(policy.Operations, op) }, "operations")
			if msg != "" {
				msg += "; allowed are " + list(policy.Operations)
			}
			r.check("allowed_operations", msg == "", msg)
			checkGuardrails(r, &t.Guardrails)
		})
}

// clients is the clients resource. A client's residency is required: the name of a
// residency rule, or "global" for no restriction, which is never a default. The
// store and the policy snapshot keep "global" as "" (NULL in SQL, so the foreign key
// to residency_rules holds), and the API shows "" as "global".
func (a *API) clients() *resource[policy.Client] {
	r := newResource(a, "clients", "client", a.st.Clients(), clientID,
		func() policy.Client { return policy.Client{Enabled: true} },
		func(r *report, c *policy.Client) {
			r.check("tenant", slug.valid(c.Tenant), "names the tenant and "+slug.message)
			r.check("tier", slug.valid(c.Tier), "names the tier and "+slug.message)
			if c.Residency == "" {
				r.check("residency", false, `is required: name a residency rule, or "global" for no residency restriction`)
			} else {
				r.check("residency", slug.valid(c.Residency),
					`names a residency rule, or is "global" for no restriction, and `+slug.message)
			}
			checkGuardrails(r, c.Guardrails)
		})
	r.toAPI = func(c *policy.Client) {
		if c.Residency == "" {
			c.Residency = policy.ResidencyGlobal
		}
	}
	r.fromAPI = func(c *policy.Client) {
		if c.Residency == policy.ResidencyGlobal {
			c.Residency = ""
		}
	}
	r.guard = a.clientPlacementGuard
	return r
}

func (a *API) providers() *resource[policy.Provider] {
	return newResource(a, "providers", "provider", a.st.Providers(), slug,
		func() policy.Provider { return policy.Provider{} },
		func(r *report, p *policy.Provider) {
			ok, msg := oneOf(p.Kind, policy.ProviderKinds)
			r.check("kind", ok, msg)
		})
}

func (a *API) deployments() *resource[policy.Deployment] {
	r := newResource(a, "deployments", "deployment", a.st.Deployments(), slug,
		func() policy.Deployment {
			return policy.Deployment{
				Kind:                  policy.KindCloud,
				RotationOverlapHours:  2,
				TLS:                   policy.TLS{Verify: true},
				TimeoutSeconds:        30,
				ConnectTimeoutSeconds: 10,
				TotalTimeoutSeconds:   600,
				Retry:                 policy.Retry{MaxAttempts: 3, Backoff: "exponential"},
				CircuitBreaker:        policy.CircuitBreaker{FailureThreshold: 5, ResetTimeoutSeconds: 60, HalfOpenMaxRequests: 1},
				Enabled:               true,
			}
		},
		func(r *report, d *policy.Deployment) {
			validateDeployment(r, d, a.allowEnvKeys)
			if d.KeySource == policy.KeySourceFile && d.KeyPath != "" && !a.anyKeyFile {
				msg := checkKeyFile(a.keyDir, d.KeyPath)
				r.check("key_path", msg == "", msg)
			}
		})
	r.reserved = []string{healthPath}
	r.guard = deploymentGuard
	return r
}

// checkKeyFile says what is wrong with the key_path of a key_source "file"
// deployment, "" if nothing: it must lie under dir, the control plane's
// PORTCULLIS_KEY_DIR (the data planes refuse any other path too), as far as a
// lexical check tells: absolute, no "." or ".." elements.
func checkKeyFile(dir, path string) string {
	if dir == "" {
		return `key_source "file" is refused: the control plane has no PORTCULLIS_KEY_DIR, the directory key files ` +
			`must lie under (set it, and the same on the data planes), or PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE=true in development`
	}
	if err := secretfile.Within(dir, path); err != nil {
		return fmt.Sprintf(`must be an absolute path under PORTCULLIS_KEY_DIR (%s), without "." or ".." elements: `+
			`a worker reads the file and sends its content upstream, so it must not name another secret`, dir)
	}
	return ""
}

func validateDeployment(r *report, d *policy.Deployment, allowEnvKeys bool) {
	r.check("provider", slug.valid(d.Provider), "names the provider and "+slug.message)
	r.check("region", slug.valid(d.Region), slug.message)
	ok, msg := oneOf(d.Kind, policy.DeploymentKinds)
	r.check("kind", ok, msg)
	msg = httpURL(d.BaseURL)
	r.check("base_url", msg == "", msg)

	switch d.KeySource {
	case "":
		r.check("key_source", false, `is required: "vault" (a KV v2 secret at key_path), "vault_dynamic" (a leased secret), `+
			`"none" (an upstream that takes no key), or in development "file"`)
	case policy.KeySourceEnv:
		r.check("key_source", allowEnvKeys, `"env" is refused: a key in an environment variable is visible to anything `+
			`that can inspect the process; use "vault", or "file" in development (the dev flag PORTCULLIS_DEV_ALLOW_ENV_KEYS=true `+
			`on the control plane and the data planes allows it)`)
		r.check("key_path", d.KeyPath != "", `is required when key_source is "env": the environment variable's name`)
	case policy.KeySourceFile, policy.KeySourceVault, policy.KeySourceVaultDynamic:
		r.check("key_path", d.KeyPath != "", `is required when key_source is "`+d.KeySource+`"`)
		r.check("key_path", text(d.KeyPath, 1024), "must be printable text of at most 1024 characters")
	case policy.KeySourceNone:
		r.check("key_path", d.KeyPath == "", `must be empty when key_source is "none"`)
	default:
		ok, msg := oneOf(d.KeySource, []string{policy.KeySourceNone, policy.KeySourceFile, policy.KeySourceVault, policy.KeySourceVaultDynamic})
		r.check("key_source", ok, msg)
	}
	validateRotation(r, d)

	ok, msg = oneOf(d.TLS.MinVersion, tlsVersions)
	r.check("tls.min_version", ok, msg+` ("" means the Go default)`)
	msg = eachOf(d.TLS.PinSHA256, pin, "pins (SHA-256 of a public key, base64 or hex)")
	r.check("tls.pin_sha256", msg == "", msg)
	r.check("tls.ca_file", text(d.TLS.CAFile, 1024), "must be printable text of at most 1024 characters")

	between := func(field string, v, lo, hi int) {
		r.check(field, v >= lo && v <= hi, fmt.Sprintf("must be an integer from %d to %d", lo, hi))
	}
	between("timeout_seconds", d.TimeoutSeconds, 1, maxTimeoutSeconds)
	between("connect_timeout_seconds", d.ConnectTimeoutSeconds, 1, 60)
	between("total_timeout_seconds", d.TotalTimeoutSeconds, 1, maxTimeoutSeconds)
	r.check("total_timeout_seconds", d.TotalTimeoutSeconds >= d.TimeoutSeconds, "must be at least timeout_seconds")
	between("retry.max_attempts", d.Retry.MaxAttempts, 1, maxRetryAttempts)
	ok, msg = oneOf(d.Retry.Backoff, retryBackoffs)
	r.check("retry.backoff", ok, msg)
	between("circuit_breaker.failure_threshold", d.CircuitBreaker.FailureThreshold, 1, maxBreakerThreshold)
	between("circuit_breaker.reset_timeout_seconds", d.CircuitBreaker.ResetTimeoutSeconds, 1, maxBreakerReset)
	between("circuit_breaker.half_open_max_requests", d.CircuitBreaker.HalfOpenMaxRequests, 1, 100)
}

// validateRotation checks a deployment's key rotation settings: a schedule needs a
// minter, and the minter must fit the key source.
func validateRotation(r *report, d *policy.Deployment) {
	r.check("rotation_interval_days", d.RotationIntervalDays >= 0 && d.RotationIntervalDays <= 3650,
		"must be an integer from 0 (rotate on demand only) to 3650")
	r.check("rotation_overlap_hours", d.RotationOverlapHours >= 0 && d.RotationOverlapHours <= 720,
		"must be a number of hours from 0 to 720 (fractions allowed: 0.5 is half an hour)")
	switch d.Minter {
	case "":
		r.check("minter", d.RotationIntervalDays == 0 || d.KeySource == policy.KeySourceVault || d.KeySource == policy.KeySourceVaultDynamic,
			`is required for a rotation schedule: "vault_version", "openai_admin" or "vault_dynamic"`)
	case policy.MinterVaultVersion, policy.MinterOpenAIAdmin:
		r.check("minter", d.KeySource == policy.KeySourceVault, `"`+d.Minter+`" needs key_source "vault"`)
	case policy.MinterVaultDynamic:
		r.check("minter", d.KeySource == policy.KeySourceVaultDynamic, `"vault_dynamic" needs key_source "vault_dynamic"`)
	default:
		ok, msg := oneOf(d.Minter, policy.Minters)
		r.check("minter", ok, msg+` ("" picks the key source's own)`)
	}
	if d.Minter == policy.MinterOpenAIAdmin {
		r.check("admin_key_path", d.AdminKeyPath != "", `is required when minter is "openai_admin": the Vault KV path of the admin key`)
		r.check("admin_project_id", d.AdminProjectID != "", `is required when minter is "openai_admin": the project whose service accounts hold the keys`)
	}
	r.check("admin_key_path", text(d.AdminKeyPath, 1024), "must be printable text of at most 1024 characters")
	r.check("admin_project_id", text(d.AdminProjectID, 256), "must be printable text of at most 256 characters")
}

func (a *API) models() *resource[policy.Model] {
	return newResource(a, "models", "model", a.st.Models(), id,
		func() policy.Model { return policy.Model{Weight: 1} },
		func(r *report, m *policy.Model) {
			r.check("name", modelName.valid(m.Name), modelName.message)
			r.check("deployment", slug.valid(m.Deployment), "names the deployment and "+slug.message)
			r.check("upstream_model", upstreamModel.valid(m.UpstreamModel), upstreamModel.message)
			price := "must be a number of US dollars from 0 to 1000000"
			r.check("input_usd_per_1m", m.InputUSDPer1M >= 0 && m.InputUSDPer1M <= maxPriceUSD, price)
			r.check("output_usd_per_1m", m.OutputUSDPer1M >= 0 && m.OutputUSDPer1M <= maxPriceUSD, price)
			r.check("weight", m.Weight >= 0 && m.Weight <= maxWeight, fmt.Sprintf("must be an integer from 0 (standby) to %d", maxWeight))
		})
}

func (a *API) residencyRules() *resource[policy.ResidencyRule] {
	return newResource(a, "residency-rules", "residency rule", a.st.ResidencyRules(), slug,
		func() policy.ResidencyRule { return policy.ResidencyRule{} },
		func(r *report, rr *policy.ResidencyRule) {
			r.check("residency", rr.Residency != policy.ResidencyGlobal,
				`"global" is reserved: a client's residency "global" means no residency restriction`)
			msg := eachOf(rr.AllowedRegions, slug.valid, "region names")
			if len(rr.AllowedRegions) == 0 {
				msg = "must list at least one region"
			}
			r.check("allowed_regions", msg == "", msg)
			msg = policy.EndpointURLProblem(rr.EndpointURL)
			r.check("endpoint_url", msg == "", msg)
		})
}

func (a *API) fallbackMaps() *resource[policy.FallbackMap] {
	return newResource(a, "fallback-maps", "fallback map", a.st.FallbackMaps(), id,
		func() policy.FallbackMap { return policy.FallbackMap{} },
		func(r *report, f *policy.FallbackMap) {
			r.check("provider", slug.valid(f.Provider), "names the provider and "+slug.message)
			r.check("from_model", modelName.valid(f.FromModel), modelName.message)
			r.check("to_model", modelName.valid(f.ToModel), modelName.message)
			r.check("to_model", f.ToModel != f.FromModel, "must differ from from_model")
		})
}

func (a *API) revokedTokens() *resource[policy.RevokedToken] {
	return newResource(a, "revoked-tokens", "revoked token", a.st.RevokedTokens(), jti,
		func() policy.RevokedToken { return policy.RevokedToken{} },
		func(r *report, t *policy.RevokedToken) {
			r.check("expires_at", !t.ExpiresAt.IsZero(), "is required: the revocation lasts until the token expires")
			r.check("reason", text(t.Reason, 500), "must be printable text of at most 500 characters")
		})
}

// checkGuardrails reports the problems of a guardrail policy (nil: none set).
func checkGuardrails(r *report, g *policy.Guardrails) { checkGuardrailsAt(r, "guardrails.", g) }

// settingsKey is the one key of the gateway settings.
var settingsKey = rule{regexp.MustCompile(`^` + policy.SettingsName + `$`),
	"must be " + policy.SettingsName + ": the policy holds one set of gateway settings"}

// settings is the policy's one set of gateway settings, /settings/gateway.
func (a *API) settings() *resource[policy.GatewaySettings] {
	return newResource(a, "settings", "gateway settings", a.st.Settings(), settingsKey,
		func() policy.GatewaySettings { return policy.GatewaySettings{Name: policy.SettingsName} },
		func(r *report, s *policy.GatewaySettings) {
			for _, p := range s.Problems() {
				if p[0] != "name" {
					r.check(p[0], false, p[1])
				}
			}
		})
}
