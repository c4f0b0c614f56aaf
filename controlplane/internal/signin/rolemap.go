package signin

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// RoleMap maps the values of the role claim (groups, as a rule) to role bindings.
type RoleMap map[string][]store.RoleBinding

var tenantName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// ParseRoleMap reads "value=role[:tenant],value=role,…": each claim value gives
// the role (a tenant_admin names its tenant); a value may be listed more than once
// for several roles. It reports every bad pair at once.
func ParseRoleMap(s string) (RoleMap, error) {
	m := RoleMap{}
	var bad []string
	for _, pair := range strings.Split(s, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		value, binding, ok := strings.Cut(pair, "=")
		value, binding = strings.TrimSpace(value), strings.TrimSpace(binding)
		role, tenant, _ := strings.Cut(binding, ":")
		switch {
		case !ok || value == "":
			bad = append(bad, fmt.Sprintf("%q is not value=role", pair))
		case !adminauth.ValidRole(role):
			bad = append(bad, fmt.Sprintf("%q: %q is not a role", pair, role))
		case adminauth.Role(role) == adminauth.TenantAdmin && !tenantName.MatchString(tenant):
			bad = append(bad, fmt.Sprintf("%q: tenant_admin needs a tenant, as tenant_admin:<tenant>", pair))
		case adminauth.Role(role) != adminauth.TenantAdmin && tenant != "":
			bad = append(bad, fmt.Sprintf("%q: only tenant_admin names a tenant", pair))
		default:
			b := store.RoleBinding{Role: role, Tenant: tenant, Source: store.BindingOIDC}
			if !slices.Contains(m[value], b) {
				m[value] = append(m[value], b)
			}
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(bad, "; "))
	}
	return m, nil
}

// Bindings are the role bindings the claim's values give: a claim is a string or
// a list of strings.
func (m RoleMap) Bindings(claim any) []store.RoleBinding {
	var values []string
	switch v := claim.(type) {
	case string:
		values = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				values = append(values, s)
			}
		}
	}
	var out []store.RoleBinding
	for _, v := range values {
		for _, b := range m[v] {
			if !slices.Contains(out, b) {
				out = append(out, b)
			}
		}
	}
	return out
}
