// Package console serves the console's home page to a signed-in person: who they
// are, their roles, a sign-out form, and the tenants and clients their roles let
// them read (read-only). Signed out, it serves web's placeholder page with its
// "Sign in" link. The full console builds on this.
package console

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/web"
)

// maxRows is how many tenants and clients the home page lists.
const maxRows = 200

var homeTmpl = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="{{.CSRF}}">
<title>Portcullis console</title>
</head>
<body>
<header>
<h1>Portcullis</h1>
<p>Signed in as <strong id="principal">{{.Principal}}</strong> (<span id="roles">{{.Roles}}</span>)</p>
<form method="post" action="/auth/logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit">Sign out</button></form>
</header>
<main>
{{if .ShowTenants}}<section aria-labelledby="tenants">
<h2 id="tenants">Tenants</h2>
<table><thead><tr><th scope="col">Name</th><th scope="col">Display name</th></tr></thead>
<tbody>{{range .Tenants}}<tr><td>{{.Name}}</td><td>{{.DisplayName}}</td></tr>{{else}}<tr><td colspan="2">None</td></tr>{{end}}</tbody></table>
</section>{{end}}
{{if .ShowClients}}<section aria-labelledby="clients">
<h2 id="clients">Clients</h2>
<table><thead><tr><th scope="col">Client</th><th scope="col">Tenant</th><th scope="col">Tier</th><th scope="col">Residency</th><th scope="col">Enabled</th></tr></thead>
<tbody>{{range .Clients}}<tr><td>{{.ClientID}}</td><td>{{.Tenant}}</td><td>{{.Tier}}</td><td>{{if .Residency}}{{.Residency}}{{else}}global{{end}}</td><td>{{if .Enabled}}yes{{else}}no{{end}}</td></tr>{{else}}<tr><td colspan="5">None</td></tr>{{end}}</tbody></table>
</section>{{end}}
<p>Everything else: the admin API under <code>/admin/v1/</code>, or the <code>portcullis</code> CLI.</p>
</main>
</body>
</html>
`))

// Handler serves GET / to the signed-in, and the placeholder to everyone else.
func Handler(st *store.Store) echo.HandlerFunc {
	placeholder := echo.WrapHandler(web.Handler())
	return func(c echo.Context) error {
		cookie, err := c.Cookie(adminauth.SessionCookie)
		if err != nil || c.Request().Method != http.MethodGet {
			return placeholder(c)
		}
		ctx := c.Request().Context()
		a, err := st.AuthenticateSession(ctx, adminauth.Hash(cookie.Value))
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrDisabled) {
			return placeholder(c)
		}
		if err != nil {
			return err
		}
		id := adminauth.NewIdentity(a.Principal.Name, a.Principal.Kind, adminauth.CredSession, a.Session.ID, a.Principal.Roles, "")
		data := map[string]any{"Principal": id.Principal, "Roles": id.RolesString(), "CSRF": a.Session.CSRFToken}
		if all, tenants, ok := id.Allows(adminauth.TenantsRead); ok {
			scoped := ctx
			if !all {
				scoped = store.WithTenants(ctx, tenants)
			}
			page, err := st.Tenants().List(scoped, "", maxRows)
			if err != nil {
				return err
			}
			data["ShowTenants"], data["Tenants"] = true, entities(page.Items)
		}
		if all, tenants, ok := id.Allows(adminauth.ClientsRead); ok {
			scoped := ctx
			if !all {
				scoped = store.WithTenants(ctx, tenants)
			}
			page, err := st.Clients().List(scoped, "", maxRows)
			if err != nil {
				return err
			}
			data["ShowClients"], data["Clients"] = true, entities(page.Items)
		}
		var b bytes.Buffer
		if err := homeTmpl.Execute(&b, data); err != nil {
			return err
		}
		h := c.Response().Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		return c.HTMLBlob(http.StatusOK, b.Bytes())
	}
}

func entities[T any](recs []store.Record[T]) []T {
	out := make([]T, len(recs))
	for i, r := range recs {
		out[i] = r.Entity
	}
	return out
}
