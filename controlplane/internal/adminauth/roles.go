// Package adminauth says who an admin API request comes from and what it may do:
// the roles and their permissions, the identity a request authenticates as (an API
// token of a person or service account, a console session, the bootstrap or the
// break-glass token), and the echo middleware that authenticates it.
//
// Permissions are "<resource>:<verb>" strings. Each admin route declares the one it
// needs (see adminapi's route table); a role is a fixed set of permissions
// (docs/admin-identity.md has the table, checked against rolePermissions by a
// test). A tenant_admin binding grants its permissions on one tenant only.
package adminauth

import (
	"slices"
	"strings"
)

// Role is one of the fixed admin roles.
type Role string

// The roles.
const (
	Admin        Role = "admin"
	Operator     Role = "operator"
	KeyCustodian Role = "key_custodian"
	Auditor      Role = "auditor"
	TenantAdmin  Role = "tenant_admin"
)

// Roles lists every role, most powerful first.
var Roles = []Role{Admin, Operator, KeyCustodian, Auditor, TenantAdmin}

// ValidRole reports whether s names a role.
func ValidRole(s string) bool { return slices.Contains(Roles, Role(s)) }

// Permission is what a route needs: "<resource>:<verb>".
type Permission string

// The permissions. Self is held by every authenticated caller: who am I, my own API
// tokens.
const (
	Self Permission = "self"

	TenantsRead  Permission = "tenants:read"
	TenantsWrite Permission = "tenants:write"
	TiersRead    Permission = "tiers:read"
	TiersWrite   Permission = "tiers:write"
	ClientsRead  Permission = "clients:read"
	ClientsWrite Permission = "clients:write"
	// ClientsPlacement is choosing a client's tenant, tier, residency and guardrails
	// freely; without it (a tenant admin) a new client must take the tier and
	// residency of one of its tenant's existing clients and no guardrails of its
	// own, and an existing client's cannot change.
	ClientsPlacement Permission = "clients:placement"
	OverridesRead    Permission = "overrides:read"
	OverridesWrite   Permission = "overrides:write"
	TokensMint       Permission = "tokens:mint" // the development issuer's client tokens
	RevokedRead      Permission = "revoked_tokens:read"
	RevokedWrite     Permission = "revoked_tokens:write"

	ProvidersRead    Permission = "providers:read"
	ProvidersWrite   Permission = "providers:write"
	DeploymentsRead  Permission = "deployments:read"
	DeploymentsWrite Permission = "deployments:write"
	// DeploymentsKeys is creating a deployment and changing where it sends requests
	// and with which key: base_url, tls, key_source, key_path, the rotation settings,
	// minter, admin_key_path and admin_project_id.
	DeploymentsKeys Permission = "deployments:keys"
	HealthRead      Permission = "health:read"
	ModelsRead      Permission = "models:read"
	ModelsWrite     Permission = "models:write"
	ResidencyRead   Permission = "residency:read"
	ResidencyWrite  Permission = "residency:write"
	FallbacksRead   Permission = "fallbacks:read"
	FallbacksWrite  Permission = "fallbacks:write"
	// SettingsRead and SettingsWrite are the policy's gateway-wide settings: token
	// issuer, audience and claims, the audit header allowlist, fallback triggers and
	// each region's upstream proxies. Writing them decides which tokens the gateway
	// accepts and where its upstream traffic goes, so only admin holds it.
	SettingsRead  Permission = "settings:read"
	SettingsWrite Permission = "settings:write"

	SecretsRead   Permission = "secrets:read" // key status and rotation history
	SecretsRotate Permission = "secrets:rotate"
	SecretsRevoke Permission = "secrets:revoke"
	SecretsAccess Permission = "secrets:access" // which worker fetched which key version

	AlertsRead        Permission = "alerts:read"
	AlertsAck         Permission = "alerts:ack"
	AnomalyRulesRead  Permission = "anomaly_rules:read"
	AnomalyRulesWrite Permission = "anomaly_rules:write"
	UsageRead         Permission = "usage:read"
	AuditExport       Permission = "audit:export"
	ChangesRead       Permission = "changes:read"
	// GuardrailsScan is the guardrails' dry run on a text the caller gives.
	GuardrailsScan  Permission = "guardrails:scan"
	PrincipalsRead  Permission = "principals:read"
	PrincipalsWrite Permission = "principals:write"
)

// readAll is every read permission: the auditor's base.
var readAll = []Permission{
	TenantsRead, TiersRead, ClientsRead, OverridesRead, RevokedRead, ProvidersRead, DeploymentsRead, HealthRead,
	ModelsRead, ResidencyRead, FallbacksRead, SettingsRead, SecretsRead, SecretsAccess, AlertsRead, AnomalyRulesRead, UsageRead,
	ChangesRead, PrincipalsRead,
}

// rolePermissions is what each role may do (beyond Self, which every caller has).
// Admin has every permission.
var rolePermissions = map[Role][]Permission{
	Operator: {
		TenantsRead, TenantsWrite, TiersRead, TiersWrite, ClientsRead, ClientsWrite, ClientsPlacement,
		OverridesRead, OverridesWrite, TokensMint, RevokedRead, RevokedWrite,
		ProvidersRead, DeploymentsRead, DeploymentsWrite, HealthRead,
		ModelsRead, ModelsWrite, ResidencyRead, ResidencyWrite, FallbacksRead, FallbacksWrite, SettingsRead,
		AlertsRead, AlertsAck, AnomalyRulesRead, AnomalyRulesWrite, GuardrailsScan,
	},
	KeyCustodian: {
		ProvidersRead, ProvidersWrite, DeploymentsRead, DeploymentsWrite, DeploymentsKeys, HealthRead, ModelsRead,
		SecretsRead, SecretsRotate, SecretsRevoke, SecretsAccess, AlertsRead,
	},
	Auditor: append(slices.Clone(readAll), AuditExport, GuardrailsScan),
	// Scoped to the binding's tenant.
	TenantAdmin: {TenantsRead, ClientsRead, ClientsWrite, OverridesRead, OverridesWrite, TokensMint, UsageRead},
}

// AllPermissions lists every permission but Self, in a stable order.
func AllPermissions() []Permission {
	return []Permission{
		TenantsRead, TenantsWrite, TiersRead, TiersWrite, ClientsRead, ClientsWrite, ClientsPlacement,
		OverridesRead, OverridesWrite, TokensMint, RevokedRead, RevokedWrite,
		ProvidersRead, ProvidersWrite, DeploymentsRead, DeploymentsWrite, DeploymentsKeys, HealthRead,
		ModelsRead, ModelsWrite, ResidencyRead, ResidencyWrite, FallbacksRead, FallbacksWrite, SettingsRead, SettingsWrite,
		SecretsRead, SecretsRotate, SecretsRevoke, SecretsAccess,
		AlertsRead, AlertsAck, AnomalyRulesRead, AnomalyRulesWrite, UsageRead, AuditExport, ChangesRead,
		GuardrailsScan, PrincipalsRead, PrincipalsWrite,
	}
}

// PermissionsOf lists the permissions of role r (Self not included).
func PermissionsOf(r Role) []Permission {
	if r == Admin {
		return AllPermissions()
	}
	return slices.Clone(rolePermissions[r])
}

// Has reports whether role r holds permission p.
func Has(r Role, p Permission) bool {
	return p == Self || slices.Contains(PermissionsOf(r), p)
}

// Resource is the part of p before the colon.
func (p Permission) Resource() string {
	r, _, _ := strings.Cut(string(p), ":")
	return r
}

// descriptions says what each permission covers, for the role table.
var descriptions = map[Permission]string{
	TenantsRead: "read tenants", TenantsWrite: "create, change, delete tenants",
	TiersRead: "read tiers", TiersWrite: "create, change, delete tiers",
	ClientsRead: "read clients", ClientsWrite: "create, change, enable, disable, delete clients",
	ClientsPlacement: "choose a client's tenant, tier, residency and guardrails freely",
	OverridesRead:    "read limit overrides", OverridesWrite: "set and clear limit overrides",
	TokensMint:  "mint client JWTs with the development issuer",
	RevokedRead: "read revoked client JWTs", RevokedWrite: "revoke client JWTs",
	ProvidersRead: "read providers", ProvidersWrite: "create, change, delete providers",
	DeploymentsRead: "read deployments", DeploymentsWrite: "change a deployment's other fields (timeouts, retry, breaker, region, enabled)",
	DeploymentsKeys: "create and delete deployments; change base_url, tls, key_*, rotation, minter, admin_key_path, admin_project_id",
	HealthRead:      "read the workers' deployment health",
	ModelsRead:      "read models and prices", ModelsWrite: "create, change, delete models",
	ResidencyRead: "read residency rules", ResidencyWrite: "create, change, delete residency rules",
	FallbacksRead: "read fallback maps", FallbacksWrite: "create, change, delete fallback maps",
	SettingsRead: "read the gateway settings (token issuer, audience, claims; audit headers)", SettingsWrite: "change the gateway settings (admin only: they decide which tokens are accepted and where upstream traffic goes)",
	SecretsRead: "key status and rotation history", SecretsRotate: "rotate keys", SecretsRevoke: "revoke keys",
	SecretsAccess: "the key access log (which worker fetched which version)",
	AlertsRead:    "read alerts", AlertsAck: "acknowledge alerts",
	AnomalyRulesRead: "read anomaly rules", AnomalyRulesWrite: "create, change, delete anomaly rules",
	UsageRead: "usage and showback", AuditExport: "audit exports, checkpoints and the signing key",
	ChangesRead: "the change history and its export", GuardrailsScan: "the guardrails' dry run on a given text",
	PrincipalsRead:  "read principals, their roles and token metadata",
	PrincipalsWrite: "create, change, disable, delete principals; set roles; issue and revoke their API tokens",
}

// RoleTable is the Markdown table of every permission against every role, as
// docs/admin-identity.md shows it ("✓", "tenant" for a tenant_admin's own tenants).
func RoleTable() string {
	var b strings.Builder
	b.WriteString("| permission | what it allows |")
	for _, r := range Roles {
		b.WriteString(" `" + string(r) + "` |")
	}
	b.WriteString("\n|---|---|")
	for range Roles {
		b.WriteString(":-:|")
	}
	b.WriteString("\n")
	for _, p := range AllPermissions() {
		b.WriteString("| `" + string(p) + "` | " + descriptions[p] + " |")
		for _, r := range Roles {
			mark := ""
			if Has(r, p) {
				mark = "✓"
				if r == TenantAdmin {
					mark = "own tenants"
				}
			}
			b.WriteString(" " + mark + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}
