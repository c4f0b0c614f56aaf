// Package adminapi serves the admin REST API under /admin/v1: create, read, update,
// delete and list for every policy entity, with per-field validation (422), optimistic
// concurrency through ETag and If-Match (412, 428) and keyset pagination; and the
// time-boxed limit override of each client (/clients/{client_id}/limit-override,
// /limit-overrides); and the read-only deployment health the data-plane workers report
// (/deployments/health).
//
// Every resource is one generic resource[T] over a store.Collection[T]; the entity
// types and their JSON are those of shared/policy, plus "revision", "created_at" and
// "updated_at", except that a client's residency is required and shown as "global"
// where the snapshot has none. Handlers return errors; ErrorHandler renders them as
// apierr.AdminBody.
package adminapi

import (
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// API is the admin API. It is safe for concurrent use.
type API struct {
	st       *store.Store
	log      *slog.Logger
	onChange func()
	health   HealthView
	// allowEnvKeys accepts key_source "env" (development only).
	allowEnvKeys bool
	// keyDir is the directory key_source "file" paths must lie under ("" refuses
	// them), unless anyKeyFile (development only).
	keyDir     string
	anyKeyFile bool
	secrets    Secrets // nil: the /secrets endpoints answer 503
	// auditSigner signs every audit export's checkpoint; nil: exports are unsigned.
	auditSigner *signing.Signer
	// allowPrivateWebhooks accepts anomaly rule webhooks to private addresses.
	allowPrivateWebhooks bool
	// tokenMaxTTL is the longest an API token may live; 0 means DefaultTokenMaxTTL.
	tokenMaxTTL time.Duration
}

// AllowPrivateWebhooks makes the API accept anomaly rules whose webhook_url is a
// private, loopback, link-local, unspecified or CGNAT IP address: development and
// tests only, with the control plane's alert-webhook-allow-private, without which
// such a webhook is refused when it is sent anyway.
func (a *API) AllowPrivateWebhooks() *API { a.allowPrivateWebhooks = true; return a }

// KeyFiles says which key_source "file" paths the API accepts: those under dir,
// checked lexically (the files are on the data planes, not here), or any path with
// allowAny (development only, PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE). With neither,
// key_source "file" is refused.
func (a *API) KeyFiles(dir string, allowAny bool) *API {
	a.keyDir, a.anyKeyFile = dir, allowAny
	return a
}

// AllowEnvKeys makes the API accept deployments with key_source "env", whose key is
// an environment variable of each data plane: development only, and only useful
// with data planes that allow it too (PORTCULLIS_DEV_ALLOW_ENV_KEYS).
func (a *API) AllowEnvKeys() *API { a.allowEnvKeys = true; return a }

// New returns the admin API over st. onChange (which may be nil) is called after every
// committed mutation, e.g. to publish a new policy snapshot; it must not block long.
// hv (required) answers GET /deployments/health.
func New(st *store.Store, log *slog.Logger, onChange func(), hv HealthView) *API {
	return &API{st: st, log: log, onChange: onChange, health: hv}
}

// Mount serves the admin API under Prefix on e and returns its group, for the routes
// other packages add (which need an entry in routePermissions too). Every request
// first authenticates with authn (adminauth.Authenticate), then is authorized by the
// permission its route declares. Unknown paths answer 404 in the admin error schema.
func (a *API) Mount(e *echo.Echo, authn echo.MiddlewareFunc) *echo.Group {
	g := e.Group(Prefix, authn, a.authorize)
	a.registerRoutes(g)
	return g
}

func (a *API) registerRoutes(g *echo.Group) {
	// Before the deployments resource, for readability: echo prefers the static
	// /deployments/health to /deployments/:key whatever the order.
	g.GET("/deployments/"+healthPath, a.deploymentHealth)
	paths := []string{
		register(g, a.tenants()),
		register(g, a.tiers()),
		register(g, a.clients()),
		register(g, a.providers()),
		register(g, a.deployments()),
		register(g, a.models()),
		register(g, a.residencyRules()),
		register(g, a.fallbackMaps()),
		register(g, a.revokedTokens()),
		register(g, a.anomalyRules()),
		register(g, a.settings()),
	}
	ov := a.limitOverrides()
	ov.register(g)
	a.registerSecrets(g)
	a.registerAudit(g)
	a.registerUsage(g)
	a.registerAlerts(g)
	a.registerIdentity(g)
	a.registerChanges(g)
	a.registerGuardrails(g)
	a.registerConfig(g)
	g.RouteNotFound("/*", func(c echo.Context) error { return unrouted(c, paths, ov) })
}

// unrouted answers a request no route took: 405 on a resource's path (echo prefers a
// not-found route to its own 405), else 404.
func unrouted(c echo.Context, paths []string, ov *overrides) error {
	segments := strings.Split(c.Param("*"), "/")
	if ok, err := ov.unrouted(c, segments); ok {
		return err
	}
	if allow := fixedAllow(segments); allow != "" {
		c.Response().Header().Set(echo.HeaderAllow, allow)
		return apierr.New(apierr.MethodNotAllowed, "%s is not allowed on /%s", c.Request().Method, strings.Join(segments, "/"))
	}
	if len(segments) == 2 && segments[0] == "secrets" && secretsPaths[segments[1]] != "" {
		c.Response().Header().Set(echo.HeaderAllow, secretsPaths[segments[1]])
		return apierr.New(apierr.MethodNotAllowed, "%s is not allowed on /secrets/%s", c.Request().Method, segments[1])
	}
	if len(segments) == 2 && segments[0] == "deployments" && segments[1] == healthPath {
		c.Response().Header().Set(echo.HeaderAllow, "GET")
		return apierr.New(apierr.MethodNotAllowed, "%s is not allowed on deployment health", c.Request().Method)
	}
	if slices.Contains(paths, segments[0]) {
		switch len(segments) {
		case 1:
			c.Response().Header().Set(echo.HeaderAllow, "GET, POST")
			return apierr.New(apierr.MethodNotAllowed, "%s is not allowed on a collection", c.Request().Method)
		case 2:
			c.Response().Header().Set(echo.HeaderAllow, "GET, PUT, PATCH, DELETE")
			return apierr.New(apierr.MethodNotAllowed, "%s is not allowed on an item", c.Request().Method)
		}
	}
	return apierr.New(apierr.NotFound, "no such admin endpoint")
}

// fixedAllow is the Allow header of the endpoints outside the resources that segments
// names (usage, alerts and their ack), or "" for none of them.
func fixedAllow(segments []string) string {
	switch {
	case len(segments) == 1 && (segments[0] == "usage" || segments[0] == "alerts"):
		return "GET"
	case len(segments) == 3 && segments[0] == "alerts" && segments[2] == "ack":
		return "POST"
	}
	return ""
}

func (a *API) changed() {
	if a.onChange != nil {
		a.onChange()
	}
}
