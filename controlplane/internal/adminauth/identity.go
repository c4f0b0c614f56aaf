package adminauth

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// Credential kinds: what a request authenticated with.
const (
	CredToken      = "token"
	CredSession    = "session"
	CredBootstrap  = "bootstrap"
	CredBreakGlass = "break_glass"
)

// Identity is an authenticated caller and what it may do. It is immutable once
// built and safe for concurrent use.
type Identity struct {
	Principal string // the principal's name, or "bootstrap" / "break-glass"
	Kind      string // person, service, bootstrap or break_glass
	// CredentialKind and CredentialID say what the request authenticated with (an
	// API token's or a session's id, never the secret).
	CredentialKind string
	CredentialID   string
	// Bindings are the role bindings in force: the principal's, narrowed to one role
	// by a token that names one.
	Bindings []store.RoleBinding
	// Narrow is the role an API token is narrowed to ("" for none), and
	// CredentialExpires when the credential ends (an API token's expiry; zero for a
	// session): a token made with this credential gets neither more nor longer.
	Narrow            string
	CredentialExpires time.Time
	grants            map[Permission]grant
}

// grant is a permission held on everything (all) or on some tenants only.
type grant struct {
	all     bool
	tenants []string
}

// NewIdentity is the identity of principal (of kind) authenticated by a credential,
// holding bindings; narrow, when not empty, keeps only the bindings of that role.
func NewIdentity(principal, kind, credKind, credID string, bindings []store.RoleBinding, narrow string) *Identity {
	id := &Identity{Principal: principal, Kind: kind, CredentialKind: credKind, CredentialID: credID, Narrow: narrow,
		grants: map[Permission]grant{Self: {all: true}}}
	for _, b := range bindings {
		if narrow != "" && b.Role != narrow {
			continue
		}
		id.Bindings = append(id.Bindings, b)
		for _, p := range PermissionsOf(Role(b.Role)) {
			g := id.grants[p]
			if Role(b.Role) == TenantAdmin {
				if !slices.Contains(g.tenants, b.Tenant) {
					g.tenants = append(g.tenants, b.Tenant)
				}
			} else {
				g.all = true
			}
			id.grants[p] = g
		}
	}
	for p, g := range id.grants {
		sort.Strings(g.tenants)
		id.grants[p] = g
	}
	return id
}

// BootstrapIdentity is the bootstrap token's: it may only manage principals, to
// create the first administrators.
func BootstrapIdentity() *Identity {
	return &Identity{Principal: "bootstrap", Kind: CredBootstrap, CredentialKind: CredBootstrap,
		grants: map[Permission]grant{Self: {all: true}, PrincipalsRead: {all: true}, PrincipalsWrite: {all: true}}}
}

// BreakGlassIdentity is the break-glass token's: it may do everything.
func BreakGlassIdentity() *Identity {
	id := NewIdentity("break-glass", CredBreakGlass, CredBreakGlass, "", []store.RoleBinding{{Role: string(Admin)}}, "")
	return id
}

// Allows reports whether the identity holds p: on everything (all), or on the listed
// tenants only.
func (id *Identity) Allows(p Permission) (all bool, tenants []string, ok bool) {
	g, ok := id.grants[p]
	if !ok {
		return false, nil, false
	}
	return g.all, g.tenants, true
}

// Can reports whether the identity holds p on everything, not only on some tenants.
func (id *Identity) Can(p Permission) bool {
	all, _, _ := id.Allows(p)
	return all
}

// Permissions lists what the identity holds, each with "*" for everything or the
// tenants it is limited to.
func (id *Identity) Permissions() map[Permission][]string {
	out := make(map[Permission][]string, len(id.grants))
	for p, g := range id.grants {
		if g.all {
			out[p] = []string{"*"}
		} else {
			out[p] = slices.Clone(g.tenants)
		}
	}
	return out
}

// RolesString is the roles in force as the change history records them, e.g.
// "admin" or "operator,tenant_admin:acme"; the bootstrap and break-glass tokens give
// their own kind.
func (id *Identity) RolesString() string {
	switch id.Kind {
	case CredBootstrap:
		return "bootstrap"
	case CredBreakGlass:
		return "break_glass"
	}
	parts := make([]string, 0, len(id.Bindings))
	for _, b := range id.Bindings {
		s := b.Role
		if b.Tenant != "" {
			s += ":" + b.Tenant
		}
		if !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// Credential is what the change history records of the credential: "token:<id>",
// "session:<id>", "bootstrap" or "break_glass".
func (id *Identity) Credential() string {
	if id.CredentialID == "" {
		return id.CredentialKind
	}
	return id.CredentialKind + ":" + id.CredentialID
}

// HasRole reports whether a binding in force gives role r (on any tenant).
func (id *Identity) HasRole(r Role) bool {
	if id.Kind == CredBreakGlass {
		return true
	}
	for _, b := range id.Bindings {
		if Role(b.Role) == r {
			return true
		}
	}
	return false
}
