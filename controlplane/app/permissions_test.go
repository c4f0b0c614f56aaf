package app

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
)

// adminRoutes lists the control plane's admin routes ("METHOD path"), the
// not-found catch-alls left out.
func adminRoutes(t *testing.T, a *App) []string {
	t.Helper()
	e, ok := a.httpSrv.Handler.(*echo.Echo)
	if !ok {
		t.Fatalf("the HTTP handler is a %T, not the echo router", a.httpSrv.Handler)
	}
	var out []string
	for _, r := range e.Routes() {
		if !strings.HasPrefix(r.Path, adminapi.Prefix+"/") || r.Method == echo.RouteNotFound {
			continue
		}
		out = append(out, r.Method+" "+r.Path)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestEveryAdminRouteDeclaresAPermission walks the real router (dev issuer on, so
// that every route is there): a route without an entry in adminapi's permission
// table fails here, and an entry without a route is stale.
func TestEveryAdminRouteDeclaresAPermission(t *testing.T) {
	a, _ := startApp(t)
	routes := adminRoutes(t, a)
	t.Logf("%d admin routes", len(routes))
	if len(routes) < 50 {
		t.Fatalf("only %d admin routes found: %v", len(routes), routes)
	}
	for _, r := range routes {
		method, path, _ := strings.Cut(r, " ")
		if _, ok := adminapi.RoutePermission(method, path); !ok {
			t.Errorf("admin route %s declares no permission: add it to routePermissions (controlplane/internal/adminapi/permissions.go)", r)
		}
	}
	for _, d := range adminapi.DeclaredRoutes() {
		if !slices.Contains(routes, d) {
			t.Errorf("routePermissions declares %s, which is no route", d)
		}
	}
}

// TestEveryRouteAgainstEveryRole sends every admin route as each role and as the
// bootstrap token: where the role lacks the route's permission the answer is 403
// forbidden naming it, and where it holds it the answer is anything else.
func TestEveryRouteAgainstEveryRole(t *testing.T) {
	a, cfg := startApp(t)
	base := "http://" + a.Addr()
	bootstrap := admintest.BootstrapToken(t, cfg.DataDir)
	admin := admintest.Token(t, base, bootstrap, "matrix-admin", "admin")
	if r := do(t, http.MethodPost, base+"/admin/v1/tenants", admin, `{"name":"acme"}`); r.status != http.StatusCreated {
		t.Fatalf("create tenant: %d %s", r.status, r.body)
	}
	tokens := map[adminauth.Role]string{adminauth.Admin: admin}
	for _, role := range adminauth.Roles[1:] {
		binding := string(role)
		if role == adminauth.TenantAdmin {
			binding += ":acme"
		}
		tokens[role] = admintest.Token(t, base, admin, "matrix-"+strings.ReplaceAll(string(role), "_", "-"), binding)
	}
	fill := strings.NewReplacer(`\:`, ":", ":key", "nothing-here", ":name", "nobody", ":id", "999999") // an escaped colon is a literal one
	for _, route := range adminRoutes(t, a) {
		method, path, _ := strings.Cut(route, " ")
		perm, _ := adminapi.RoutePermission(method, path)
		url := base + fill.Replace(path)
		body := ""
		if method != http.MethodGet && method != http.MethodDelete {
			body = "{}"
		}
		for _, role := range adminauth.Roles {
			allowed := adminauth.Has(role, perm)
			r := do(t, method, url, tokens[role], body)
			check(t, route, string(role), allowed, perm, r)
		}
		allowed := perm == adminauth.Self || perm == adminauth.PrincipalsRead || perm == adminauth.PrincipalsWrite
		check(t, route, "bootstrap", allowed, perm, do(t, method, url, bootstrap, body))
	}
}

func check(t *testing.T, route, who string, allowed bool, perm adminauth.Permission, r httpResult) {
	t.Helper()
	if r.status == http.StatusUnauthorized || r.status >= 500 {
		t.Errorf("%s as %s: %d %s", route, who, r.status, r.body)
		return
	}
	if allowed {
		if r.status == http.StatusForbidden {
			t.Errorf("%s as %s: refused (403), but %s grants %s: %s", route, who, who, perm, r.body)
		}
		return
	}
	var body struct {
		Error struct{ Code, Permission string }
	}
	_ = json.Unmarshal([]byte(r.body), &body)
	if r.status != http.StatusForbidden || body.Error.Code != "forbidden" || body.Error.Permission != string(perm) {
		t.Errorf("%s as %s: %d %s, want 403 forbidden naming %s", route, who, r.status, r.body, perm)
	}
}
