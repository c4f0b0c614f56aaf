package adminapi

import (
	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// Prefix is where the admin API is mounted.
const Prefix = "/admin/v1"

// unroutedPath is the route that answers every admin path no other route takes (404
// or 405): any authenticated caller may learn that.
const unroutedPath = Prefix + "/*"

// routePermissions is the permission every admin route needs, by "METHOD path" as
// echo names the route. authorize refuses a route missing here (403), and a test
// walks the router so that a route added without an entry fails the build's tests.
var routePermissions = map[string]adminauth.Permission{
	"GET " + Prefix + "/whoami":           adminauth.Self,
	"GET " + Prefix + "/me/tokens":        adminauth.Self,
	"POST " + Prefix + "/me/tokens":       adminauth.Self,
	"DELETE " + Prefix + "/me/tokens/:id": adminauth.Self,

	"GET " + Prefix + "/principals":                     adminauth.PrincipalsRead,
	"POST " + Prefix + "/principals":                    adminauth.PrincipalsWrite,
	"GET " + Prefix + "/principals/:name":               adminauth.PrincipalsRead,
	"PATCH " + Prefix + "/principals/:name":             adminauth.PrincipalsWrite,
	"DELETE " + Prefix + "/principals/:name":            adminauth.PrincipalsWrite,
	"PUT " + Prefix + "/principals/:name/roles":         adminauth.PrincipalsWrite,
	"GET " + Prefix + "/principals/:name/tokens":        adminauth.PrincipalsRead,
	"POST " + Prefix + "/principals/:name/tokens":       adminauth.PrincipalsWrite,
	"DELETE " + Prefix + "/principals/:name/tokens/:id": adminauth.PrincipalsWrite,

	"GET " + Prefix + "/changes":        adminauth.ChangesRead,
	"GET " + Prefix + "/changes/export": adminauth.ChangesRead,

	"GET " + Prefix + "/tenants":           adminauth.TenantsRead,
	"POST " + Prefix + "/tenants":          adminauth.TenantsWrite,
	"GET " + Prefix + "/tenants/:key":      adminauth.TenantsRead,
	"PUT " + Prefix + "/tenants/:key":      adminauth.TenantsWrite,
	"PATCH " + Prefix + "/tenants/:key":    adminauth.TenantsWrite,
	"DELETE " + Prefix + "/tenants/:key":   adminauth.TenantsWrite,
	"GET " + Prefix + "/tiers":             adminauth.TiersRead,
	"POST " + Prefix + "/tiers":            adminauth.TiersWrite,
	"GET " + Prefix + "/tiers/:key":        adminauth.TiersRead,
	"PUT " + Prefix + "/tiers/:key":        adminauth.TiersWrite,
	"PATCH " + Prefix + "/tiers/:key":      adminauth.TiersWrite,
	"DELETE " + Prefix + "/tiers/:key":     adminauth.TiersWrite,
	"GET " + Prefix + "/clients":           adminauth.ClientsRead,
	"POST " + Prefix + "/clients":          adminauth.ClientsWrite,
	"GET " + Prefix + "/clients/:key":      adminauth.ClientsRead,
	"PUT " + Prefix + "/clients/:key":      adminauth.ClientsWrite,
	"PATCH " + Prefix + "/clients/:key":    adminauth.ClientsWrite,
	"DELETE " + Prefix + "/clients/:key":   adminauth.ClientsWrite,
	"GET " + Prefix + "/providers":         adminauth.ProvidersRead,
	"POST " + Prefix + "/providers":        adminauth.ProvidersWrite,
	"GET " + Prefix + "/providers/:key":    adminauth.ProvidersRead,
	"PUT " + Prefix + "/providers/:key":    adminauth.ProvidersWrite,
	"PATCH " + Prefix + "/providers/:key":  adminauth.ProvidersWrite,
	"DELETE " + Prefix + "/providers/:key": adminauth.ProvidersWrite,
	// Creating or deleting a deployment is key custody; an update that changes a key
	// field needs deployments:keys as well (see deploymentGuard).
	"GET " + Prefix + "/deployments":               adminauth.DeploymentsRead,
	"POST " + Prefix + "/deployments":              adminauth.DeploymentsKeys,
	"GET " + Prefix + "/deployments/:key":          adminauth.DeploymentsRead,
	"PUT " + Prefix + "/deployments/:key":          adminauth.DeploymentsWrite,
	"PATCH " + Prefix + "/deployments/:key":        adminauth.DeploymentsWrite,
	"DELETE " + Prefix + "/deployments/:key":       adminauth.DeploymentsKeys,
	"GET " + Prefix + "/deployments/" + healthPath: adminauth.HealthRead,
	"GET " + Prefix + "/models":                    adminauth.ModelsRead,
	"POST " + Prefix + "/models":                   adminauth.ModelsWrite,
	"GET " + Prefix + "/models/:key":               adminauth.ModelsRead,
	"PUT " + Prefix + "/models/:key":               adminauth.ModelsWrite,
	"PATCH " + Prefix + "/models/:key":             adminauth.ModelsWrite,
	"DELETE " + Prefix + "/models/:key":            adminauth.ModelsWrite,
	"GET " + Prefix + "/residency-rules":           adminauth.ResidencyRead,
	"POST " + Prefix + "/residency-rules":          adminauth.ResidencyWrite,
	"GET " + Prefix + "/residency-rules/:key":      adminauth.ResidencyRead,
	"PUT " + Prefix + "/residency-rules/:key":      adminauth.ResidencyWrite,
	"PATCH " + Prefix + "/residency-rules/:key":    adminauth.ResidencyWrite,
	"DELETE " + Prefix + "/residency-rules/:key":   adminauth.ResidencyWrite,
	"GET " + Prefix + "/fallback-maps":             adminauth.FallbacksRead,
	"POST " + Prefix + "/fallback-maps":            adminauth.FallbacksWrite,
	"GET " + Prefix + "/fallback-maps/:key":        adminauth.FallbacksRead,
	"PUT " + Prefix + "/fallback-maps/:key":        adminauth.FallbacksWrite,
	"PATCH " + Prefix + "/fallback-maps/:key":      adminauth.FallbacksWrite,
	"DELETE " + Prefix + "/fallback-maps/:key":     adminauth.FallbacksWrite,
	"GET " + Prefix + "/revoked-tokens":            adminauth.RevokedRead,
	"POST " + Prefix + "/revoked-tokens":           adminauth.RevokedWrite,
	"GET " + Prefix + "/revoked-tokens/:key":       adminauth.RevokedRead,
	"PUT " + Prefix + "/revoked-tokens/:key":       adminauth.RevokedWrite,
	"PATCH " + Prefix + "/revoked-tokens/:key":     adminauth.RevokedWrite,
	"DELETE " + Prefix + "/revoked-tokens/:key":    adminauth.RevokedWrite,
	"GET " + Prefix + "/settings":                  adminauth.SettingsRead,
	"POST " + Prefix + "/settings":                 adminauth.SettingsWrite,
	"GET " + Prefix + "/settings/:key":             adminauth.SettingsRead,
	"PUT " + Prefix + "/settings/:key":             adminauth.SettingsWrite,
	"PATCH " + Prefix + "/settings/:key":           adminauth.SettingsWrite,
	"DELETE " + Prefix + "/settings/:key":          adminauth.SettingsWrite,
	"GET " + Prefix + "/anomaly-rules":             adminauth.AnomalyRulesRead,
	"POST " + Prefix + "/anomaly-rules":            adminauth.AnomalyRulesWrite,
	"GET " + Prefix + "/anomaly-rules/:key":        adminauth.AnomalyRulesRead,
	"PUT " + Prefix + "/anomaly-rules/:key":        adminauth.AnomalyRulesWrite,
	"PATCH " + Prefix + "/anomaly-rules/:key":      adminauth.AnomalyRulesWrite,
	"DELETE " + Prefix + "/anomaly-rules/:key":     adminauth.AnomalyRulesWrite,

	"GET " + Prefix + "/" + overridesPath:                adminauth.OverridesRead,
	"GET " + Prefix + "/clients/:key/" + overridePath:    adminauth.OverridesRead,
	"PUT " + Prefix + "/clients/:key/" + overridePath:    adminauth.OverridesWrite,
	"DELETE " + Prefix + "/clients/:key/" + overridePath: adminauth.OverridesWrite,
	"POST " + Prefix + "/tokens":                         adminauth.TokensMint, // devissuer.MintPath
	"POST " + Prefix + "/secrets/rotate":                 adminauth.SecretsRotate,
	"POST " + Prefix + "/secrets/revoke":                 adminauth.SecretsRevoke,
	"GET " + Prefix + "/secrets/status":                  adminauth.SecretsRead,
	"GET " + Prefix + "/secrets/history":                 adminauth.SecretsRead,
	"GET " + Prefix + "/secrets/access":                  adminauth.SecretsAccess,
	"GET " + Prefix + auditExportPath:                    adminauth.AuditExport,
	"GET " + Prefix + auditSigningKeyPath:                adminauth.AuditExport,
	"GET " + Prefix + auditCheckpointsPath:               adminauth.AuditExport,
	// Other methods on the audit endpoints only answer 405.
	"POST " + Prefix + auditExportPath:        adminauth.Self,
	"PUT " + Prefix + auditExportPath:         adminauth.Self,
	"PATCH " + Prefix + auditExportPath:       adminauth.Self,
	"DELETE " + Prefix + auditExportPath:      adminauth.Self,
	"POST " + Prefix + auditSigningKeyPath:    adminauth.Self,
	"PUT " + Prefix + auditSigningKeyPath:     adminauth.Self,
	"PATCH " + Prefix + auditSigningKeyPath:   adminauth.Self,
	"DELETE " + Prefix + auditSigningKeyPath:  adminauth.Self,
	"POST " + Prefix + auditCheckpointsPath:   adminauth.Self,
	"PUT " + Prefix + auditCheckpointsPath:    adminauth.Self,
	"PATCH " + Prefix + auditCheckpointsPath:  adminauth.Self,
	"DELETE " + Prefix + auditCheckpointsPath: adminauth.Self,
	"POST " + Prefix + guardrailsScanPath:     adminauth.GuardrailsScan,
	// A configuration plan, apply or export reads every resource a file holds, and
	// checks those permissions (and, to apply, the writes') itself; tiers:read is
	// the one all the roles that read everything have.
	"POST " + Prefix + configApplyPath:         adminauth.TiersRead,
	"GET " + Prefix + configPath:               adminauth.TiersRead,
	"GET " + Prefix + usagePath:                adminauth.UsageRead,
	"GET " + Prefix + alertsPath:               adminauth.AlertsRead,
	"POST " + Prefix + alertsPath + "/:id/ack": adminauth.AlertsAck,
}

// RoutePermission returns the permission the route (method, echo path) needs, and
// whether it declares one.
func RoutePermission(method, path string) (adminauth.Permission, bool) {
	if path == unroutedPath {
		return adminauth.Self, true
	}
	p, ok := routePermissions[method+" "+path]
	return p, ok
}

// forbidden is the 403 of a caller that lacks p.
func forbidden(p adminauth.Permission, why string) error {
	e := apierr.New(apierr.Forbidden, "this request needs the permission %s%s", p, why)
	e.Permission = string(p)
	return e
}

// authorize admits a request only if its route declares a permission and the
// caller's roles grant it. A permission granted on some tenants only (tenant_admin)
// scopes the request's context to them (store.WithTenants), so that it sees and
// writes nothing else.
func (a *API) authorize(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := adminauth.IdentityOf(c)
		if id == nil {
			return apierr.New(apierr.Unauthorized, "missing or invalid admin token")
		}
		p, ok := RoutePermission(c.Request().Method, c.Path())
		if !ok {
			a.log.Error("admin route declares no permission; refused", "method", c.Request().Method, "route", c.Path())
			return apierr.New(apierr.Forbidden, "this endpoint declares no permission")
		}
		all, tenants, ok := id.Allows(p)
		if !ok {
			return forbidden(p, ", which the caller's roles ("+rolesOrNone(id)+") do not grant")
		}
		if !all {
			req := c.Request()
			c.SetRequest(req.WithContext(store.WithTenants(req.Context(), tenants)))
		}
		return next(c)
	}
}

func rolesOrNone(id *adminauth.Identity) string {
	if s := id.RolesString(); s != "" {
		return s
	}
	return "none"
}

// DeclaredRoutes lists every "METHOD path" routePermissions declares, for the test
// that walks the router.
func DeclaredRoutes() []string {
	out := make([]string, 0, len(routePermissions))
	for k := range routePermissions {
		out = append(out, k)
	}
	return out
}
