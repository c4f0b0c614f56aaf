// Package console serves the web console: server-rendered pages for people signed in
// with OIDC, under /console/. It reads through the store, scoped by the viewer's
// roles as the admin API scopes them, and writes only through the admin API, called
// in process with the viewer's session: the API's validation, permissions, tenant
// scoping and change history apply to every console action unchanged. Forms post
// with the session's CSRF token; pages send a strict Content-Security-Policy (no
// inline script or style). Signed out, GET / serves web's placeholder page with its
// "Sign in" link.
package console

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/signin"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/web"
)

// Prefix is where the console's pages live.
const Prefix = "/console"

// ContentSecurityPolicy is every console page's: scripts and styles from the
// console's own files only, nothing inline, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// PollHeader marks a page's automatic refresh (the templates' htmx polls send it):
// such a request does not count as the person's use of their session.
const PollHeader = "X-Console-Poll"

// maxFormBytes bounds a form the console takes (an uploaded export aside).
const maxFormBytes = 1 << 20

// pageSize is how many rows a list page shows.
const pageSize = 50

// Console is the web console. Create it with New and Register it on the control
// plane's router. It is safe for concurrent use.
type Console struct {
	st    *store.Store
	log   *slog.Logger
	api   http.Handler // the control plane's router: admin API calls go through it
	pages map[string]*template.Template
	mint  bool // the development token issuer is on: client pages offer to mint

	limits LimitsReader // nil: client pages do not show the limits in use
}

// LimitsReader reads one key of the PC_LIMITS bucket: its value, or nil when it
// does not exist (never written, expired or deleted).
type LimitsReader func(ctx context.Context, key string) ([]byte, error)

// ReadLimits makes client pages show the limits in use now, read with r.
func (c *Console) ReadLimits(r LimitsReader) { c.limits = r }

// New parses the console's templates.
func New(st *store.Store, log *slog.Logger) (*Console, error) {
	c := &Console{st: st, log: log, pages: map[string]*template.Template{}}
	names, err := fs.Glob(web.Templates, "*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		if name == "base.html" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(web.Templates, "base.html", name)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		c.pages[strings.TrimSuffix(name, ".html")] = t
	}
	return c, nil
}

// OfferMinting makes client pages offer to mint a token with the development
// issuer, which must be on.
func (c *Console) OfferMinting() { c.mint = true }

// Register serves the console on e, which must also serve the admin API (under
// adminapi.Prefix) and the sign-in routes.
func (c *Console) Register(e *echo.Echo) {
	c.api = e
	e.GET("/", c.home)
	static := http.StripPrefix(Prefix+"/static/", http.FileServerFS(web.Static))
	e.GET(Prefix+"/static/*", echo.WrapHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "public, max-age=3600")
		h.Set("X-Content-Type-Options", "nosniff")
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		static.ServeHTTP(w, r)
	})))
	g := e.Group(Prefix, c.session)
	g.GET("", c.overview)
	g.GET("/", c.overview)
	g.GET("/live/overview", c.liveOverview)
	g.GET("/live/breakers", c.liveBreakers)
	g.GET("/live/traffic", c.liveTraffic)
	g.GET("/tenants", c.tenants)
	g.POST("/tenants", c.createTenant)
	g.GET("/clients", c.clients)
	g.GET("/clients/new", c.newClient)
	g.POST("/clients", c.createClient)
	g.GET("/clients/:id", c.client)
	g.POST("/clients/:id/enable", c.setEnabled(true))
	g.POST("/clients/:id/disable", c.setEnabled(false))
	g.POST("/clients/:id/override", c.setOverride)
	g.POST("/clients/:id/override/clear", c.clearOverride)
	g.POST("/clients/:id/token", c.mintToken)
	g.GET("/keys", c.keys)
	g.POST("/keys/rotate", c.rotateKeys)
	g.POST("/keys/revoke", c.revokeKeys)
	g.GET("/alerts", c.alerts)
	g.POST("/alerts/:id/ack", c.ackAlert)
	g.GET("/audit", c.audit)
	g.GET("/audit/export", c.exportAudit)
	g.POST("/audit/verify", c.verifyAudit)
	g.GET("/changes", c.changes)
	g.GET("/usage", c.usage)
	g.GET("/deployments", c.deployments)
	c.registerDeploymentEdits(g)
	c.registerTiers(g)
	c.registerAdmins(g)
	c.registerRules(g)
}

// viewer is the signed-in person a console request is for.
type viewer struct {
	id     *adminauth.Identity
	cookie string // the session cookie's value, forwarded to the admin API
	csrf   string
}

const viewerKey = "console.viewer"

func viewerOf(ec echo.Context) *viewer { return ec.Get(viewerKey).(*viewer) }

// authenticate returns the viewer of the request's session cookie, or nil when it
// has none that is valid.
func (c *Console) authenticate(ec echo.Context) (*viewer, error) {
	cookie, err := ec.Cookie(adminauth.SessionCookie)
	if err != nil {
		return nil, nil
	}
	a, err := c.st.AuthenticateSession(ec.Request().Context(), adminauth.Hash(cookie.Value))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDisabled) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	id := adminauth.NewIdentity(a.Principal.Name, a.Principal.Kind, adminauth.CredSession, a.Session.ID, a.Principal.Roles, "")
	return &viewer{id: id, cookie: cookie.Value, csrf: a.Session.CSRFToken}, nil
}

// session lets signed-in people through, with the console's security headers; it
// sends anyone else to sign in (a GET) or refuses them (403), and refuses a POST
// without the session's CSRF token.
func (c *Console) session(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		securityHeaders(ec.Response().Header())
		if ec.Request().Header.Get(PollHeader) != "" {
			// A page refreshing itself: no person is there, so it must not keep the
			// session from idling out (the admin API calls it makes inherit this).
			ec.SetRequest(ec.Request().WithContext(store.WithUnattended(ec.Request().Context())))
		}
		v, err := c.authenticate(ec)
		if err != nil {
			return err
		}
		req := ec.Request()
		if v == nil {
			if req.Method == http.MethodGet && req.Header.Get("HX-Request") == "true" {
				// A refresh or search from a page whose session has ended: htmx would
				// follow a redirect and swap the sign-in page into the table, so tell it
				// to load the sign-in page instead, coming back to the page it was on.
				back := Prefix + "/"
				if u, err := url.Parse(req.Header.Get("HX-Current-URL")); err == nil && strings.HasPrefix(u.Path, Prefix) {
					back = u.RequestURI()
				}
				ec.Response().Header().Set("HX-Redirect", signin.LoginPath+"?return_to="+url.QueryEscape(back))
				return ec.NoContent(http.StatusOK)
			}
			if req.Method == http.MethodGet {
				return ec.Redirect(http.StatusSeeOther, signin.LoginPath+"?return_to="+url.QueryEscape(req.URL.RequestURI()))
			}
			return c.fail(ec, nil, http.StatusForbidden, "Not signed in", "Sign in again: your session has ended.")
		}
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			limit := int64(maxFormBytes)
			if req.URL.Path == Prefix+"/audit/verify" {
				limit = maxVerifyBytes
			}
			req.Body = http.MaxBytesReader(ec.Response(), req.Body, limit)
			if subtle.ConstantTimeCompare([]byte(ec.FormValue("csrf")), []byte(v.csrf)) != 1 {
				return c.fail(ec, v, http.StatusForbidden, "Refused", "The form was not sent from this console session (CSRF check failed). Reload the page and try again.")
			}
		}
		ec.Set(viewerKey, v)
		return next(ec)
	}
}

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// home serves GET /: the overview to the signed in, the placeholder to everyone
// else.
func (c *Console) home(ec echo.Context) error {
	v, err := c.authenticate(ec)
	if err != nil {
		return err
	}
	if v == nil {
		return echo.WrapHandler(web.Handler())(ec)
	}
	securityHeaders(ec.Response().Header())
	ec.Set(viewerKey, v)
	return c.overview(ec)
}

// page is what a template renders.
type page struct {
	Title     string
	Nav       []navItem
	Principal string
	Roles     string
	CSRF      string
	Flash     string
	FlashCode string // which of flashes: the flash's data-done, for tests and scripts
	Error     string
	Data      any
	Form      map[string]string // the values a form was sent with, to show it again
	Errors    map[string]string // per field, from the admin API
}

type navItem struct {
	Href, Label string
	Current     bool
}

// nav is the sections the viewer may read, current marked.
func nav(v *viewer, current string) []navItem {
	items := []struct {
		href, label string
		need        adminauth.Permission
	}{
		{Prefix + "/", "Overview", ""},
		{Prefix + "/tenants", "Tenants", adminauth.TenantsRead},
		{Prefix + "/clients", "Clients", adminauth.ClientsRead},
		{Prefix + "/tiers", "Tiers", adminauth.TiersRead},
		{Prefix + "/keys", "Keys", adminauth.DeploymentsRead},
		{Prefix + "/deployments", "Deployments", adminauth.DeploymentsRead},
		{Prefix + "/alerts", "Alerts", adminauth.AlertsRead},
		{Prefix + "/usage", "Usage", adminauth.UsageRead},
		{Prefix + "/audit", "Audit", adminauth.AuditExport},
		{Prefix + "/changes", "Changes", adminauth.ChangesRead},
		{Prefix + "/admins", "Admins", adminauth.PrincipalsRead},
	}
	var out []navItem
	for _, it := range items {
		if it.need != "" {
			if _, _, ok := v.id.Allows(it.need); !ok {
				continue
			}
		}
		out = append(out, navItem{Href: it.href, Label: it.label, Current: it.label == current})
	}
	return out
}

// render writes the named page with status.
func (c *Console) render(ec echo.Context, status int, name string, p page) error {
	v := viewerOf(ec)
	p.Principal, p.Roles, p.CSRF = v.id.Principal, v.id.RolesString(), v.csrf
	if p.Nav == nil {
		p.Nav = nav(v, p.Title)
	}
	if p.Flash == "" {
		if msg, ok := flashes[ec.QueryParam("done")]; ok {
			p.Flash, p.FlashCode = msg, ec.QueryParam("done")
		}
	}
	t, ok := c.pages[name]
	if !ok {
		return fmt.Errorf("console: no page %q", name)
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "base", p); err != nil {
		return fmt.Errorf("console: render %s: %w", name, err)
	}
	return ec.HTMLBlob(status, b.Bytes())
}

// flashes are the messages a redirect after a change may show (?done=…): a fixed
// set, so that a link cannot make the console say anything else.
var flashes = map[string]string{
	"tenant-created":   "Tenant created.",
	"client-created":   "Client created.",
	"enabled":          "Client enabled: the data planes admit it within seconds.",
	"disabled":         "Client disabled: the data planes refuse it within seconds.",
	"override-set":     "Limit override set.",
	"override-cleared": "Limit override cleared.",
	"alert-acked":      "Alert acknowledged.",
	"rotated":          "Rotated: the new key version is in use; the previous one stays valid for the overlap.",
	"revoked":          "Revoked: every key of the provider is invalid, and the data planes use the new ones.",

	// After changes on the tier and anomaly rule pages.
	"tier-created": "Tier created. Its guardrails are set below.",
	"tier-saved":   "Tier saved: the data planes apply it to its clients within seconds.",
	"rule-created": "Anomaly rule created.",
	"rule-saved":   "Anomaly rule saved: the detector uses it from its next run.",

	// After changes on the admins pages.
	"principal-created":  "Service account created. Give it an API token below.",
	"roles-set":          "Roles set: they apply to its next request.",
	"principal-enabled":  "Enabled: it may sign in and use its API tokens again.",
	"principal-disabled": "Disabled: its sessions and API tokens stopped working at once.",
	"token-revoked":      "Token revoked: it stopped working at once.",

	// After changes on the deployment, model and residency pages.
	"deployment-saved":  "Deployment saved: the data planes use its new settings within seconds.",
	"provider-created":  "Provider created.",
	"model-created":     "Model created: the data planes route to it within seconds.",
	"model-saved":       "Model saved: the data planes use it within seconds.",
	"fallback-created":  "Fallback map created.",
	"fallback-deleted":  "Fallback map deleted.",
	"residency-created": "Residency rule created. Clients may now be placed in it.",
	"residency-saved":   "Residency rule saved: the data planes apply its regions within seconds.",
}

// fail renders an error page; v may be nil (not signed in).
func (c *Console) fail(ec echo.Context, v *viewer, status int, title, msg string) error {
	if v == nil {
		return ec.HTML(status, "<!doctype html><title>"+template.HTMLEscapeString(title)+"</title><p>"+
			template.HTMLEscapeString(msg)+` <a href="`+signin.LoginPath+`">Sign in</a></p>`)
	}
	ec.Set(viewerKey, v)
	return c.render(ec, status, "error", page{Title: title, Data: msg})
}

// apiResult is an admin API call's answer.
type apiResult struct {
	status int
	body   []byte
	header http.Header
}

// problem is the admin API's error in an answer that is not a success.
func (r apiResult) problem() apierr.AdminError {
	var b apierr.AdminBody
	if err := json.Unmarshal(r.body, &b); err != nil || b.Error.Code == "" {
		return apierr.AdminError{Message: fmt.Sprintf("the admin API answered %d", r.status)}
	}
	return b.Error
}

// fieldErrors are the problem's per-field messages, by field, and the rest as one
// message.
func (r apiResult) fieldErrors() (map[string]string, string) {
	p := r.problem()
	fields := map[string]string{}
	for _, f := range p.Fields {
		if _, ok := fields[f.Field]; !ok {
			fields[f.Field] = f.Message
		}
	}
	msg := p.Message
	if len(fields) > 0 {
		msg = "Some fields need attention."
	}
	return fields, msg
}

// call sends one request to the admin API as the viewer (its session cookie and CSRF
// token, the browser's address), in process.
func (c *Console) call(ec echo.Context, method, path string, body any, header ...string) (apiResult, error) {
	v := viewerOf(ec)
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return apiResult{}, err
		}
		rd = bytes.NewReader(b)
	}
	in := ec.Request()
	req, err := http.NewRequestWithContext(in.Context(), method, adminapi.Prefix+path, rd)
	if err != nil {
		return apiResult{}, err
	}
	req.RemoteAddr = in.RemoteAddr
	if xff := in.Header.Get("X-Forwarded-For"); xff != "" {
		req.Header.Set("X-Forwarded-For", xff) // trusted only from the configured proxies
	}
	req.AddCookie(&http.Cookie{Name: adminauth.SessionCookie, Value: v.cookie})
	req.Header.Set("X-CSRF-Token", v.csrf)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	c.api.ServeHTTP(rec, req)
	return apiResult{status: rec.status, body: rec.body.Bytes(), header: rec.header}, nil
}

// recorder is the http.ResponseWriter of an in-process admin API call.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if !r.wrote {
		r.status, r.wrote = status, true
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.body.Write(b)
}

// scope is ctx narrowed to what the viewer may read with p, and whether it may read
// at all.
func scope(ctx context.Context, v *viewer, p adminauth.Permission) (context.Context, bool) {
	all, tenants, ok := v.id.Allows(p)
	if !ok {
		return ctx, false
	}
	if !all {
		ctx = store.WithTenants(ctx, tenants)
	}
	return ctx, true
}
