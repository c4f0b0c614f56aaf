package console

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// registerAdmins serves the admin identity pages under g: the principals, one
// principal's roles, state and API tokens, and the viewer's own tokens.
func (c *Console) registerAdmins(g *echo.Group) {
	g.GET("/admins", c.admins)
	g.POST("/admins", c.createServiceAccount)
	g.GET("/admins/:name", c.admin)
	g.POST("/admins/:name/roles", c.setRoles)
	g.POST("/admins/:name/enable", c.setPrincipalDisabled(false))
	g.POST("/admins/:name/disable", c.setPrincipalDisabled(true))
	g.POST("/admins/:name/tokens", c.createToken(false))
	g.POST("/admins/:name/tokens/:id/revoke", c.revokeToken(false))
	// The viewer's own tokens live outside /admins/: every principal name is a
	// valid :name there, "me" included.
	g.GET("/me/tokens", c.myTokens)
	g.POST("/me/tokens", c.createToken(true))
	g.POST("/me/tokens/:id/revoke", c.revokeToken(true))
}

// myTokensPath is the page of the viewer's own API tokens.
const myTokensPath = Prefix + "/me/tokens"

// tokenExpiries are the lifetimes the token form offers; the API refuses one
// beyond its maximum (admin-token-max-ttl, 90 days by default) beside the field.
var tokenExpiries = []struct{ Value, Label string }{
	{"3600", "1 hour"}, {"28800", "8 hours"}, {"86400", "1 day"}, {"604800", "7 days"}, {"2592000", "30 days"}, {"7776000", "90 days"},
}

// roleChoice is one role's checkbox in a roles form. tenant_admin has none: it is
// given per tenant, in the form's tenants field.
type roleChoice struct {
	Role    string
	Checked bool
}

// roleChoices are the checkboxes of the roles in checked, a comma-separated list.
func roleChoices(checked string) []roleChoice {
	on := strings.Split(checked, ",")
	var out []roleChoice
	for _, r := range adminauth.Roles {
		if r != adminauth.TenantAdmin {
			out = append(out, roleChoice{Role: string(r), Checked: slices.Contains(on, string(r))})
		}
	}
	return out
}

// rolesForm reads a roles form: the ticked roles and the tenants of tenant_admin
// (separated by commas or spaces). It returns the role bindings to send, in the
// admin API's shape, and the form's values to show it again.
func rolesForm(ec echo.Context) ([]map[string]string, map[string]string, error) {
	values, err := ec.FormParams()
	if err != nil {
		return nil, nil, err
	}
	bindings := []map[string]string{} // never null: [] sets no roles
	var roles []string
	for _, r := range values["roles"] {
		if r = strings.TrimSpace(r); r != "" && !slices.Contains(roles, r) {
			roles = append(roles, r)
			bindings = append(bindings, map[string]string{"role": r})
		}
	}
	tenants := strings.TrimSpace(values.Get("tenants"))
	for _, t := range strings.FieldsFunc(tenants, func(r rune) bool { return r == ',' || r == ' ' }) {
		bindings = append(bindings, map[string]string{"role": string(adminauth.TenantAdmin), "tenant": t})
	}
	return bindings, map[string]string{"roles": strings.Join(roles, ","), "tenants": tenants}, nil
}

// bindingErrors puts the admin API's errors of the role bindings it was sent beside
// the roles form's fields: a bad role by the role checkboxes, a bad tenant by the
// tenants field, each naming the value; other fields stay as they are.
func bindingErrors(fields map[string]string, sent []map[string]string) map[string]string {
	out := map[string]string{}
	for _, f := range slices.Sorted(maps.Keys(fields)) {
		key, msg := f, fields[f]
		switch {
		case f == "roles.tenant": // a tenant that does not exist, not saying which
			key, msg = "tenants", "names a tenant that does not exist"
		case strings.HasPrefix(f, "roles["):
			i, part, _ := strings.Cut(strings.TrimPrefix(f, "roles["), "].")
			n, err := strconv.Atoi(i)
			key = "roles"
			if part == "tenant" {
				key = "tenants"
			}
			if err == nil && n >= 0 && n < len(sent) {
				msg = strconv.Quote(sent[n][part]) + ": " + msg // part is "role" or "tenant"
			}
		}
		if _, ok := out[key]; !ok {
			out[key] = msg
		}
	}
	return out
}

// admins serves the list of principals, filtered by kind and a search of name,
// display name and email, with the form of a new service account for those who
// may write.
func (c *Console) admins(ec echo.Context) error {
	return c.adminsPage(ec, http.StatusOK, nil, nil, "")
}

func (c *Console) adminsPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.PrincipalsRead) {
		return c.fail(ec, v, http.StatusForbidden, "Not allowed", "Your roles do not include the permission "+
			string(adminauth.PrincipalsRead)+". Your own API tokens are at "+myTokensPath+".")
	}
	all, err := c.st.Principals(ec.Request().Context())
	if err != nil {
		return err
	}
	// Principals are few (people and automation), so the filter runs here.
	q, kind := strings.TrimSpace(ec.QueryParam("q")), ec.QueryParam("kind")
	if kind != store.PrincipalPerson && kind != store.PrincipalService {
		kind = ""
	}
	needle := strings.ToLower(q)
	var items []store.Principal
	for _, p := range all {
		if kind != "" && p.Kind != kind {
			continue
		}
		if needle != "" && !strings.Contains(strings.ToLower(p.Name+"\n"+p.DisplayName+"\n"+p.Email), needle) {
			continue
		}
		items = append(items, p)
	}
	if form == nil {
		form = map[string]string{}
	}
	data := map[string]any{"Items": items, "Total": len(all), "Query": q, "Kind": kind,
		"CanWrite": v.id.Can(adminauth.PrincipalsWrite), "RoleChoices": roleChoices(form["roles"])}
	return c.render(ec, status, "admins", page{Title: "Admins", Data: data, Form: form, Errors: errs, Error: msg})
}

// createServiceAccount creates a service account with the form's roles through the
// admin API.
func (c *Console) createServiceAccount(ec echo.Context) error {
	bindings, form, err := rolesForm(ec)
	if err != nil {
		return err
	}
	form["name"] = strings.TrimSpace(ec.FormValue("name"))
	res, err := c.call(ec, http.MethodPost, "/principals", map[string]any{"name": form["name"], "kind": store.PrincipalService, "roles": bindings})
	if err != nil {
		return err
	}
	if res.status != http.StatusCreated {
		fields, msg := res.fieldErrors()
		errs := bindingErrors(fields, bindings)
		if res.status == http.StatusConflict {
			errs["name"] = msg
		}
		return c.adminsPage(ec, res.status, form, errs, msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/admins/"+url.PathEscape(form["name"])+"?done=principal-created")
}

// tokenOwner is whose API tokens a page or form is about: a principal's, managed
// with principals:write, or the viewer's own (self), which everyone signed in may
// manage.
type tokenOwner struct {
	name string
	self bool
}

func ownerOf(ec echo.Context, self bool) tokenOwner {
	if self {
		return tokenOwner{name: viewerOf(ec).id.Principal, self: true}
	}
	return tokenOwner{name: ec.Param("name")}
}

// api is the owner's tokens in the admin API.
func (o tokenOwner) api() string {
	if o.self {
		return "/me/tokens"
	}
	return "/principals/" + url.PathEscape(o.name) + "/tokens"
}

// page is the owner's page in the console.
func (o tokenOwner) page() string {
	if o.self {
		return myTokensPath
	}
	return Prefix + "/admins/" + url.PathEscape(o.name)
}

// tokensPath is where the owner's token forms post.
func (o tokenOwner) tokensPath() string {
	if o.self {
		return myTokensPath
	}
	return o.page() + "/tokens"
}

// tokenRow is one API token on a principal's page.
type tokenRow struct {
	store.APIToken
	State string // active, expired or revoked
}

// createdToken is the admin API's answer to a token's creation: its record and the
// token, which the console shows in that answer's page only.
type createdToken struct {
	store.APIToken
	Token string `json:"token"`
}

// admin serves one principal: its details, role bindings with the form to set the
// manual ones, enable or disable, and its API tokens with the forms to create and
// revoke them.
func (c *Console) admin(ec echo.Context) error {
	return c.adminPage(ec, http.StatusOK, ownerOf(ec, false), nil, nil, "", nil)
}

// myTokens serves the viewer's own API tokens.
func (c *Console) myTokens(ec echo.Context) error {
	return c.adminPage(ec, http.StatusOK, ownerOf(ec, true), nil, nil, "", nil)
}

// adminPage renders o's page. fresh, when not nil, is a token just created, shown
// on this page and never again.
func (c *Console) adminPage(ec echo.Context, status int, o tokenOwner, form, errs map[string]string, msg string, fresh *createdToken) error {
	v, ctx := viewerOf(ec), ec.Request().Context()
	if !o.self && !v.id.Can(adminauth.PrincipalsRead) {
		return c.forbidden(ec, adminauth.PrincipalsRead)
	}
	p, err := c.st.Principal(ctx, o.name)
	if errors.Is(err, store.ErrNotFound) {
		return c.fail(ec, v, http.StatusNotFound, "Not found", "There is no principal "+strconv.Quote(o.name)+".")
	}
	if err != nil {
		return err
	}
	tokens, err := c.st.APITokens(ctx, o.name)
	if err != nil {
		return err
	}
	now := time.Now()
	rows := make([]tokenRow, len(tokens))
	for i, t := range tokens {
		state := "active"
		switch {
		case t.RevokedAt != nil:
			state = "revoked"
		case !t.ExpiresAt.After(now):
			state = "expired"
		}
		rows[i] = tokenRow{APIToken: t, State: state}
	}
	if form == nil {
		form = map[string]string{}
	}
	// The roles form edits the manual bindings: those from the identity provider are
	// replaced at each sign-in.
	if _, ok := form["roles"]; !ok {
		var manual, tenants []string
		for _, b := range p.Roles {
			switch {
			case b.Source != store.BindingManual:
			case b.Tenant != "":
				tenants = append(tenants, b.Tenant)
			default:
				manual = append(manual, b.Role)
			}
		}
		form["roles"], form["tenants"] = strings.Join(manual, ","), strings.Join(tenants, ", ")
	}
	var tokenRoles []string // a token may be narrowed to one of these
	for _, b := range p.Roles {
		if !slices.Contains(tokenRoles, b.Role) {
			tokenRoles = append(tokenRoles, b.Role)
		}
	}
	if form["expires_in_seconds"] == "" {
		form["expires_in_seconds"] = "2592000"
		if o.self {
			form["expires_in_seconds"] = "86400"
		}
	}
	canManage := !o.self && v.id.Can(adminauth.PrincipalsWrite)
	data := map[string]any{"Principal": p, "Self": o.self, "Page": o.page(), "TokensPath": o.tokensPath(),
		"Tokens": rows, "TokenRoles": tokenRoles, "Expiries": tokenExpiries, "RoleChoices": roleChoices(form["roles"]),
		"CanManage": canManage, "CanTokens": o.self || canManage}
	if fresh != nil {
		data["NewToken"] = fresh
	}
	title := "Admins"
	if o.self {
		title = "Your tokens"
	}
	return c.render(ec, status, "admin", page{Title: title, Data: data, Form: form, Errors: errs, Error: msg})
}

// setRoles sets a principal's manual role bindings through the admin API.
func (c *Console) setRoles(ec echo.Context) error {
	o := ownerOf(ec, false)
	bindings, form, err := rolesForm(ec)
	if err != nil {
		return err
	}
	res, err := c.call(ec, http.MethodPut, "/principals/"+url.PathEscape(o.name)+"/roles", map[string]any{"roles": bindings})
	if err != nil {
		return err
	}
	if res.status != http.StatusOK {
		fields, msg := res.fieldErrors()
		return c.adminPage(ec, res.status, o, form, bindingErrors(fields, bindings), msg, nil)
	}
	return ec.Redirect(http.StatusSeeOther, o.page()+"?done=roles-set")
}

// setPrincipalDisabled disables or enables a principal through the admin API, if it
// has not changed since the page was read (the form's revision is the If-Match).
// Disabling ends the principal's sessions and tokens at once.
func (c *Console) setPrincipalDisabled(disabled bool) echo.HandlerFunc {
	return func(ec echo.Context) error {
		o := ownerOf(ec, false)
		res, err := c.call(ec, http.MethodPatch, "/principals/"+url.PathEscape(o.name), map[string]any{"disabled": disabled},
			"If-Match", ifMatch(ec.FormValue("revision")))
		if err != nil {
			return err
		}
		if res.status != http.StatusOK {
			_, msg := res.fieldErrors()
			if res.status == http.StatusPreconditionFailed {
				msg = "The principal changed since this page was loaded; here it is as it is now."
			}
			return c.adminPage(ec, res.status, o, nil, nil, msg, nil)
		}
		done := "principal-enabled"
		if disabled {
			done = "principal-disabled"
		}
		return ec.Redirect(http.StatusSeeOther, o.page()+"?done="+done)
	}
}

// createToken creates an API token through the admin API and answers the page with
// the token on it. That answer is the only place the token appears: it is not put
// in a redirect, logged, or kept.
func (c *Console) createToken(self bool) echo.HandlerFunc {
	return func(ec echo.Context) error {
		o := ownerOf(ec, self)
		form := formValues(ec, "name", "expires_in_seconds", "role")
		secs, err := strconv.ParseInt(form["expires_in_seconds"], 10, 64)
		if err != nil {
			return c.adminPage(ec, http.StatusUnprocessableEntity, o, form,
				map[string]string{"expires_in_seconds": "choose when the token expires"}, "Some fields need attention.", nil)
		}
		body := map[string]any{"name": form["name"], "expires_in_seconds": secs}
		if form["role"] != "" {
			body["role"] = form["role"]
		}
		res, err := c.call(ec, http.MethodPost, o.api(), body)
		if err != nil {
			return err
		}
		if res.status != http.StatusCreated {
			errs, msg := res.fieldErrors()
			return c.adminPage(ec, res.status, o, form, errs, msg, nil)
		}
		var t createdToken
		if err := json.Unmarshal(res.body, &t); err != nil || t.Token == "" {
			return c.adminPage(ec, http.StatusBadGateway, o, nil, nil, "The token was created but its answer could not be read: revoke it and create another.", nil)
		}
		return c.adminPage(ec, http.StatusCreated, o, nil, nil, "", &t)
	}
}

// revokeToken revokes an API token through the admin API.
func (c *Console) revokeToken(self bool) echo.HandlerFunc {
	return func(ec echo.Context) error {
		o := ownerOf(ec, self)
		res, err := c.call(ec, http.MethodDelete, o.api()+"/"+url.PathEscape(ec.Param("id")), nil)
		if err != nil {
			return err
		}
		if res.status != http.StatusOK {
			_, msg := res.fieldErrors()
			return c.adminPage(ec, res.status, o, nil, nil, "Not revoked: "+msg, nil)
		}
		return ec.Redirect(http.StatusSeeOther, o.page()+"?done=token-revoked")
	}
}
