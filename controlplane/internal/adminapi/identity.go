package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// DefaultTokenMaxTTL is the longest an API token may live unless the control plane
// sets another maximum (admin-token-max-ttl).
const DefaultTokenMaxTTL = 90 * 24 * time.Hour

// principalName is what a principal's name looks like: a service account's slug, or
// a person's email or username as the identity provider gives it.
var principalName = rule{regexp.MustCompile(`^[a-z0-9][a-z0-9._@+-]{0,127}$`),
	"must be 1 to 128 lowercase letters, digits, '.', '_', '@', '+' or '-', starting with a letter or digit"}

// WithTokenMaxTTL sets the longest expiry an API token may be given (default
// DefaultTokenMaxTTL).
func (a *API) WithTokenMaxTTL(d time.Duration) *API { a.tokenMaxTTL = d; return a }

func (a *API) registerIdentity(g *echo.Group) {
	g.GET("/whoami", a.whoami)
	g.GET("/me/tokens", a.listMyTokens)
	g.POST("/me/tokens", a.createMyToken)
	g.DELETE("/me/tokens/:id", a.revokeMyToken)
	g.GET("/principals", a.listPrincipals)
	g.POST("/principals", a.createPrincipal)
	g.GET("/principals/:name", a.getPrincipal)
	g.PATCH("/principals/:name", a.patchPrincipal)
	g.DELETE("/principals/:name", a.deletePrincipal)
	g.PUT("/principals/:name/roles", a.setRoles)
	g.GET("/principals/:name/tokens", a.listTokens)
	g.POST("/principals/:name/tokens", a.createToken)
	g.DELETE("/principals/:name/tokens/:id", a.revokeToken)
}

// whoami answers GET /whoami: the caller, its roles and its permissions.
func (a *API) whoami(c echo.Context) error {
	id := adminauth.IdentityOf(c)
	roles := id.Bindings
	if roles == nil {
		roles = []store.RoleBinding{}
	}
	return c.JSON(http.StatusOK, map[string]any{
		"principal": id.Principal, "kind": id.Kind, "credential": id.Credential(), "roles": roles,
		"permissions": id.Permissions(),
	})
}

type principalRequest struct {
	Name        string              `json:"name"`
	Kind        string              `json:"kind"`
	DisplayName string              `json:"display_name"`
	Email       string              `json:"email"`
	Disabled    bool                `json:"disabled"`
	Roles       []store.RoleBinding `json:"roles"`
}

func (a *API) listPrincipals(c echo.Context) error {
	ps, err := a.st.Principals(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ps})
}

func (a *API) createPrincipal(c echo.Context) error {
	obj, err := readObject(c, false)
	if err != nil {
		return err
	}
	req := principalRequest{Kind: store.PrincipalService}
	rep := &report{}
	rolesRaw := obj["roles"]
	delete(obj, "roles")
	decodeObject(rep, "", obj, reflect.ValueOf(&req).Elem(), reflect.ValueOf(principalRequest{Kind: store.PrincipalService}))
	req.Roles = decodeRoles(rep, rolesRaw)
	rep.check("name", principalName.valid(req.Name), principalName.message)
	ok, msg := oneOf(req.Kind, []string{store.PrincipalPerson, store.PrincipalService})
	rep.check("kind", ok, msg)
	rep.check("display_name", text(req.DisplayName, 200), "must be printable text of at most 200 characters")
	rep.check("email", req.Email == "" || (text(req.Email, 254) && strings.Contains(req.Email, "@")), "must be an email address")
	if err := rep.err(); err != nil {
		return err
	}
	p, err := a.st.CreatePrincipal(c.Request().Context(), store.Principal{
		Name: req.Name, Kind: req.Kind, DisplayName: req.DisplayName, Email: req.Email, Disabled: req.Disabled, Roles: req.Roles,
	})
	if err != nil {
		return identityError(err, "principal")
	}
	c.Response().Header().Set(echo.HeaderLocation, c.Request().URL.Path+"/"+p.Name)
	return respondPrincipal(c, http.StatusCreated, p)
}

// decodeRoles reads a list of role bindings, reporting every bad one.
func decodeRoles(rep *report, raw []byte) []store.RoleBinding {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var in []struct {
		Role   string `json:"role"`
		Tenant string `json:"tenant"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		rep.fail("roles", `must be an array of {"role": …, "tenant": …} objects`)
		return nil
	}
	out := make([]store.RoleBinding, 0, len(in))
	for i, b := range in {
		field := fmt.Sprintf("roles[%d]", i)
		if !adminauth.ValidRole(b.Role) {
			roles := make([]string, len(adminauth.Roles))
			for j, r := range adminauth.Roles {
				roles[j] = string(r)
			}
			rep.check(field+".role", false, "must be one of "+list(roles))
			continue
		}
		if adminauth.Role(b.Role) == adminauth.TenantAdmin {
			rep.check(field+".tenant", slug.valid(b.Tenant), "names the tenant a tenant_admin administers and "+slug.message)
		} else {
			rep.check(field+".tenant", b.Tenant == "", "is only for the tenant_admin role")
		}
		out = append(out, store.RoleBinding{Role: b.Role, Tenant: b.Tenant, Source: store.BindingManual})
	}
	return out
}

func (a *API) getPrincipal(c echo.Context) error {
	p, err := a.st.Principal(c.Request().Context(), c.Param("name"))
	if err != nil {
		return identityError(err, "principal")
	}
	return respondPrincipal(c, http.StatusOK, p)
}

func (a *API) patchPrincipal(c echo.Context) error {
	obj, err := readObject(c, true)
	if err != nil {
		return err
	}
	var req struct {
		DisplayName *string `json:"display_name"`
		Email       *string `json:"email"`
		Disabled    *bool   `json:"disabled"`
	}
	rep := &report{}
	decodeObject(rep, "", obj, reflect.ValueOf(&req).Elem(), reflect.ValueOf(req))
	if req.DisplayName != nil {
		rep.check("display_name", text(*req.DisplayName, 200), "must be printable text of at most 200 characters")
	}
	if req.Email != nil {
		rep.check("email", *req.Email == "" || (text(*req.Email, 254) && strings.Contains(*req.Email, "@")), "must be an email address")
	}
	if err := rep.err(); err != nil {
		return err
	}
	revision, err := ifMatch(c)
	if err != nil {
		return err
	}
	p, err := a.st.UpdatePrincipal(c.Request().Context(), c.Param("name"), revision, func(p *store.Principal) {
		if req.DisplayName != nil {
			p.DisplayName = *req.DisplayName
		}
		if req.Email != nil {
			p.Email = *req.Email
		}
		if req.Disabled != nil {
			p.Disabled = *req.Disabled
		}
	})
	if err != nil {
		return identityError(err, "principal")
	}
	return respondPrincipal(c, http.StatusOK, p)
}

func (a *API) deletePrincipal(c echo.Context) error {
	revision, err := ifMatch(c)
	if err != nil {
		return err
	}
	if err := a.st.DeletePrincipal(c.Request().Context(), c.Param("name"), revision); err != nil {
		return identityError(err, "principal")
	}
	return c.NoContent(http.StatusNoContent)
}

// setRoles answers PUT /principals/{name}/roles: the principal's manual role
// bindings become the body's "roles"; bindings from the identity provider stay.
func (a *API) setRoles(c echo.Context) error {
	obj, err := readObject(c, false)
	if err != nil {
		return err
	}
	rep := &report{}
	for k := range obj {
		if k != "roles" {
			rep.fail(k, "unknown field")
		}
	}
	raw, ok := obj["roles"]
	rep.check("roles", ok, "is required: the principal's role bindings, [] for none")
	roles := decodeRoles(rep, raw)
	if err := rep.err(); err != nil {
		return err
	}
	p, err := a.st.SetRoles(c.Request().Context(), c.Param("name"), store.BindingManual, roles)
	if err != nil {
		return identityError(err, "principal")
	}
	return respondPrincipal(c, http.StatusOK, p)
}

func respondPrincipal(c echo.Context, status int, p store.Principal) error {
	c.Response().Header().Set("ETag", etag(p.Revision))
	return c.JSON(status, p)
}

// ifMatch reads an optional If-Match of one strong ETag: 0 when absent or "*".
func ifMatch(c echo.Context) (int64, error) {
	h := strings.TrimSpace(c.Request().Header.Get("If-Match"))
	if h == "" || h == "*" {
		return 0, nil
	}
	if len(h) >= 2 && h[0] == '"' && h[len(h)-1] == '"' {
		if n, err := strconv.ParseInt(h[1:len(h)-1], 10, 64); err == nil && n > 0 {
			return n, nil
		}
	}
	return 0, stale("principal")
}

type tokenRequest struct {
	Name             string     `json:"name"`
	Role             string     `json:"role"`
	ExpiresAt        *time.Time `json:"expires_at"`
	ExpiresInSeconds *int64     `json:"expires_in_seconds"`
}

// createdToken is the answer to a token's creation: the only time the token is
// shown.
type createdToken struct {
	store.APIToken
	Token string `json:"token"`
}

func (a *API) listTokens(c echo.Context) error { return a.tokensOf(c, c.Param("name")) }

func (a *API) listMyTokens(c echo.Context) error {
	id := adminauth.IdentityOf(c)
	if err := ownsTokens(id); err != nil {
		return err
	}
	return a.tokensOf(c, id.Principal)
}

func (a *API) tokensOf(c echo.Context, principal string) error {
	ctx := c.Request().Context()
	if _, err := a.st.Principal(ctx, principal); err != nil {
		return identityError(err, "principal")
	}
	ts, err := a.st.APITokens(ctx, principal)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"items": ts})
}

func (a *API) createToken(c echo.Context) error { return a.issueToken(c, c.Param("name")) }

func (a *API) createMyToken(c echo.Context) error {
	id := adminauth.IdentityOf(c)
	if err := ownsTokens(id); err != nil {
		return err
	}
	return a.issueToken(c, id.Principal)
}

// ownsTokens refuses the principal-less bootstrap and break-glass tokens the /me
// token endpoints: they have no principal to hold a token.
func ownsTokens(id *adminauth.Identity) error {
	if id.Kind == adminauth.CredBootstrap || id.Kind == adminauth.CredBreakGlass {
		return apierr.New(apierr.NotFound, "the %s token belongs to no principal and holds no API tokens; "+
			"create a principal and give it tokens under /principals", id.Kind)
	}
	return nil
}

// issueToken creates an API token of principal and answers it, shown this once.
func (a *API) issueToken(c echo.Context, principal string) error {
	obj, err := readObject(c, false)
	if err != nil {
		return err
	}
	var req tokenRequest
	rep := &report{}
	decodeObject(rep, "", obj, reflect.ValueOf(&req).Elem(), reflect.ValueOf(tokenRequest{}))
	rep.check("name", req.Name != "" && text(req.Name, 100), "is required: printable text of at most 100 characters saying what the token is for")
	maxTTL := a.tokenMaxTTL
	if maxTTL <= 0 {
		maxTTL = DefaultTokenMaxTTL
	}
	now := time.Now().UTC()
	var expires time.Time
	switch {
	case req.ExpiresAt != nil && req.ExpiresInSeconds != nil:
		rep.check("expires_in_seconds", false, "give either expires_at or expires_in_seconds, not both")
	case req.ExpiresAt == nil && req.ExpiresInSeconds == nil:
		rep.check("expires_at", false, fmt.Sprintf("is required (an RFC 3339 timestamp at most %s ahead), or give expires_in_seconds", maxTTL))
	case req.ExpiresInSeconds != nil:
		ok := *req.ExpiresInSeconds >= 60 && *req.ExpiresInSeconds <= int64(maxTTL/time.Second)
		rep.check("expires_in_seconds", ok, fmt.Sprintf("must be from 60 to %d (the maximum token lifetime)", int64(maxTTL/time.Second)))
		expires = now.Add(time.Duration(*req.ExpiresInSeconds) * time.Second)
	default:
		expires = req.ExpiresAt.UTC()
		rep.check("expires_at", expires.After(now.Add(time.Minute)), "must be at least a minute in the future")
		rep.check("expires_at", !expires.After(now.Add(maxTTL)), fmt.Sprintf("must be at most %s ahead (the maximum token lifetime)", maxTTL))
	}
	ctx := c.Request().Context()
	p, err := a.st.Principal(ctx, principal)
	if err != nil {
		return identityError(err, "principal")
	}
	// A token made with a narrowed or expiring token, for the caller itself, is no
	// wider and lives no longer than the token that made it.
	if caller := adminauth.IdentityOf(c); caller.Principal == principal && caller.CredentialKind == adminauth.CredToken {
		if caller.Narrow != "" {
			if req.Role == "" {
				req.Role = caller.Narrow
			}
			rep.check("role", req.Role == caller.Narrow, "must be "+caller.Narrow+": a token narrowed to it makes no wider token")
		}
		if !caller.CredentialExpires.IsZero() && expires.After(caller.CredentialExpires) {
			rep.check(expiryField(req), false, "must not be after "+caller.CredentialExpires.UTC().Format(time.RFC3339)+
				", when the token making it expires")
		}
	}
	if req.Role != "" {
		held := slices.ContainsFunc(p.Roles, func(b store.RoleBinding) bool { return b.Role == req.Role })
		rep.check("role", held, "must be one of the principal's own roles: a token narrows its principal's rights, never widens them")
	}
	if err := rep.err(); err != nil {
		return err
	}
	token, hash, tokID := adminauth.NewAPIToken()
	t, err := a.st.CreateAPIToken(ctx, store.APIToken{
		ID: tokID, Principal: principal, Name: req.Name, Role: req.Role, CreatedBy: adminauth.IdentityOf(c).Principal,
		ExpiresAt: expires.Truncate(time.Second),
	}, hash)
	if err != nil {
		return identityError(err, "principal")
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, createdToken{APIToken: t, Token: token})
}

func (a *API) revokeToken(c echo.Context) error { return a.revokeTokenOf(c, c.Param("name")) }

func (a *API) revokeMyToken(c echo.Context) error {
	id := adminauth.IdentityOf(c)
	if err := ownsTokens(id); err != nil {
		return err
	}
	return a.revokeTokenOf(c, id.Principal)
}

func (a *API) revokeTokenOf(c echo.Context, principal string) error {
	t, err := a.st.RevokeAPIToken(c.Request().Context(), principal, c.Param("id"))
	if err != nil {
		return identityError(err, "API token")
	}
	return c.JSON(http.StatusOK, t)
}

// identityError renders a store error of the identity endpoints.
func identityError(err error, noun string) error {
	if dup, ok := errors.AsType[*store.DuplicateError](err); ok {
		return apierr.Wrap(apierr.Conflict, err, "a %s with this %s already exists", noun, strings.Join(dup.Fields, " and "))
	}
	if ref, ok := errors.AsType[*store.ReferenceError](err); ok {
		out := apierr.Wrap(apierr.ValidationFailed, err, "%s: no such tenant", ref.Field)
		out.Fields = []apierr.FieldError{{Field: ref.Field, Message: "no such tenant"}}
		return out
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apierr.Wrap(apierr.NotFound, err, "%s not found", noun)
	case errors.Is(err, store.ErrStale):
		return stale(noun)
	case errors.Is(err, store.ErrInvalid):
		return apierr.Wrap(apierr.ValidationFailed, err, "the database refused a value")
	}
	return err
}

// expiryField is the field a token request gave its expiry in.
func expiryField(req tokenRequest) string {
	if req.ExpiresInSeconds != nil {
		return "expires_in_seconds"
	}
	return "expires_at"
}
