package store

import (
	"context"
	"fmt"
)

type tenantsKey struct{}

// WithTenants returns ctx scoped to tenants: the collections read and write with it
// see only the entities of those tenants (tenants, their clients, and those clients'
// limit overrides), as if no other existed, and refuse to create or move one outside
// them. A collection with no tenant (tiers, deployments, …) sees nothing under a
// scope. An empty list scopes to no tenant at all.
func WithTenants(ctx context.Context, tenants []string) context.Context {
	if tenants == nil {
		tenants = []string{}
	}
	return context.WithValue(ctx, tenantsKey{}, tenants)
}

// TenantsOf returns the tenants ctx is scoped to, and whether it is scoped at all.
func TenantsOf(ctx context.Context) ([]string, bool) {
	t, ok := ctx.Value(tenantsKey{}).([]string)
	return t, ok
}

// scoped is the SQL condition, joined with AND, that confines t's rows to the tenants
// of ctx, with its argument appended to args: "" when ctx is not scoped, and a
// condition no row meets when t has no tenant.
func (t *table[T]) scoped(ctx context.Context, args *[]any) string {
	tenants, ok := TenantsOf(ctx)
	if !ok {
		return ""
	}
	if t.scope == "" {
		return " AND false"
	}
	*args = append(*args, tenants)
	return " AND (" + fmt.Sprintf(t.scope, fmt.Sprintf("$%d::text[]", len(*args))) + ")"
}
