package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

func entities[T any](recs []store.Record[T]) []T {
	out := make([]T, len(recs))
	for i, r := range recs {
		out[i] = r.Entity
	}
	return out
}

// forbidden is the page for a section or action the viewer's roles do not allow.
func (c *Console) forbidden(ec echo.Context, p adminauth.Permission) error {
	return c.fail(ec, viewerOf(ec), http.StatusForbidden, "Not allowed",
		"Your roles do not include the permission "+string(p)+".")
}

// listPage reads one page of a collection for a list page: the cursor of ?after=,
// a bad one starting over.
func listPage[T any](ec echo.Context, coll *store.Collection[T], sctx context.Context, f store.Filter) (store.Page[T], error) {
	page, err := coll.ListFiltered(sctx, ec.QueryParam("after"), pageSize, f)
	if errors.Is(err, store.ErrBadCursor) {
		page, err = coll.ListFiltered(sctx, "", pageSize, f)
	}
	return page, err
}

// tenants serves the tenant list, with the create form for those who may write.
func (c *Console) tenants(ec echo.Context) error {
	return c.tenantsPage(ec, http.StatusOK, nil, nil, "")
}

func (c *Console) tenantsPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	sctx, ok := scope(ec.Request().Context(), v, adminauth.TenantsRead)
	if !ok {
		return c.forbidden(ec, adminauth.TenantsRead)
	}
	q := strings.TrimSpace(ec.QueryParam("q"))
	pg, err := listPage(ec, c.st.Tenants(), sctx, store.Filter{Search: q})
	if err != nil {
		return err
	}
	data := map[string]any{"Items": entities(pg.Items), "Next": pg.Next, "Query": q, "CanWrite": v.id.Can(adminauth.TenantsWrite)}
	return c.render(ec, status, "tenants", page{Title: "Tenants", Data: data, Form: form, Errors: errs, Error: msg})
}

// createTenant creates a tenant through the admin API.
func (c *Console) createTenant(ec echo.Context) error {
	form := formValues(ec, "name", "display_name")
	res, err := c.call(ec, http.MethodPost, "/tenants", map[string]any{"name": form["name"], "display_name": form["display_name"]})
	if err != nil {
		return err
	}
	if res.status != http.StatusCreated {
		errs, msg := res.fieldErrors()
		return c.tenantsPage(ec, res.status, form, errs, msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/tenants?done=tenant-created&q="+url.QueryEscape(form["name"]))
}

// clients serves the client list: search on the id, filters on tenant and state,
// pages of pageSize. An htmx request gets the same page; htmx keeps its rows.
func (c *Console) clients(ec echo.Context) error {
	v := viewerOf(ec)
	sctx, ok := scope(ec.Request().Context(), v, adminauth.ClientsRead)
	if !ok {
		return c.forbidden(ec, adminauth.ClientsRead)
	}
	q, tenant, enabled := strings.TrimSpace(ec.QueryParam("q")), ec.QueryParam("tenant"), ec.QueryParam("enabled")
	f := store.Filter{Search: q, Equals: map[string]string{}}
	if tenant != "" {
		f.Equals["tenant"] = tenant
	}
	if enabled == "true" || enabled == "false" {
		f.Equals["enabled"] = enabled
	} else {
		enabled = ""
	}
	pg, err := listPage(ec, c.st.Clients(), sctx, f)
	if err != nil {
		return err
	}
	tenants, err := c.tenantNames(ec, adminauth.ClientsRead)
	if err != nil {
		return err
	}
	_, _, canWrite := v.id.Allows(adminauth.ClientsWrite)
	data := map[string]any{"Items": entities(pg.Items), "Next": pg.Next, "Query": q, "Tenant": tenant, "Enabled": enabled,
		"Tenants": tenants, "CanWrite": canWrite}
	return c.render(ec, http.StatusOK, "clients", page{Title: "Clients", Data: data})
}

// tenantNames are the names of the tenants on which the viewer holds p.
func (c *Console) tenantNames(ec echo.Context, p adminauth.Permission) ([]string, error) {
	all, tenants, ok := viewerOf(ec).id.Allows(p)
	if !ok {
		return nil, nil
	}
	if !all {
		return slices.Sorted(slices.Values(tenants)), nil
	}
	var names []string
	for cursor := ""; ; {
		pg, err := c.st.Tenants().List(ec.Request().Context(), cursor, 500)
		if err != nil {
			return nil, err
		}
		for _, r := range pg.Items {
			names = append(names, r.Entity.Name)
		}
		if cursor = pg.Next; cursor == "" || len(names) >= 5000 {
			return names, nil
		}
	}
}

// newClient serves the form of a new client.
func (c *Console) newClient(ec echo.Context) error {
	return c.newClientPage(ec, http.StatusOK, map[string]string{"enabled": "true"}, nil, "")
}

func (c *Console) newClientPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if _, _, ok := v.id.Allows(adminauth.ClientsWrite); !ok {
		return c.forbidden(ec, adminauth.ClientsWrite)
	}
	tenants, err := c.tenantNames(ec, adminauth.ClientsWrite)
	if err != nil {
		return err
	}
	tiers, residencies, err := c.placements(ec)
	if err != nil {
		return err
	}
	data := map[string]any{"Tenants": tenants, "Tiers": tiers, "Residencies": residencies}
	return c.render(ec, status, "client_new", page{Title: "Clients", Data: data, Form: form, Errors: errs, Error: msg})
}

// placements are the tiers and residencies a new client may take: every one for a
// viewer who may read them, else those the viewer's clients already have (a
// tenant_admin reuses its tenants' placements).
func (c *Console) placements(ec echo.Context) (tiers, residencies []string, err error) {
	v, ctx := viewerOf(ec), ec.Request().Context()
	if v.id.Can(adminauth.TiersRead) && v.id.Can(adminauth.ResidencyRead) {
		pg, err := c.st.Tiers().List(ctx, "", 1000)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range pg.Items {
			tiers = append(tiers, r.Entity.Name)
		}
		rules, err := c.st.ResidencyRules().List(ctx, "", 1000)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range rules.Items {
			residencies = append(residencies, r.Entity.Residency)
		}
		return tiers, append(residencies, policy.ResidencyGlobal), nil
	}
	sctx, ok := scope(ctx, v, adminauth.ClientsWrite)
	if !ok {
		return nil, nil, nil
	}
	pg, err := c.st.Clients().List(sctx, "", 1000)
	if err != nil {
		return nil, nil, err
	}
	for _, r := range pg.Items {
		res := r.Entity.Residency
		if res == "" {
			res = policy.ResidencyGlobal
		}
		if !slices.Contains(tiers, r.Entity.Tier) {
			tiers = append(tiers, r.Entity.Tier)
		}
		if !slices.Contains(residencies, res) {
			residencies = append(residencies, res)
		}
	}
	slices.Sort(tiers)
	slices.Sort(residencies)
	return tiers, residencies, nil
}

// createClient creates a client through the admin API.
func (c *Console) createClient(ec echo.Context) error {
	form := formValues(ec, "client_id", "tenant", "tier", "residency", "enabled")
	if form["enabled"] == "" {
		form["enabled"] = "false" // an unchecked box sends nothing
	}
	body := map[string]any{"client_id": form["client_id"], "tenant": form["tenant"], "tier": form["tier"],
		"residency": form["residency"], "enabled": form["enabled"] == "true"}
	res, err := c.call(ec, http.MethodPost, "/clients", body)
	if err != nil {
		return err
	}
	if res.status != http.StatusCreated {
		errs, msg := res.fieldErrors()
		return c.newClientPage(ec, res.status, form, errs, msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/clients/"+url.PathEscape(form["client_id"])+"?done=client-created")
}

// client serves one client: its placement and state, enable or disable, and its
// limit override with the form to set one.
func (c *Console) client(ec echo.Context) error {
	return c.clientPage(ec, http.StatusOK, map[string]string{"for": "3600"}, nil, "")
}

// overrideDurations are the override lengths the form offers (the API allows up to
// 30 days).
var overrideDurations = []struct{ Value, Label string }{
	{"900", "15 minutes"}, {"3600", "1 hour"}, {"14400", "4 hours"}, {"86400", "1 day"}, {"604800", "7 days"}, {"2592000", "30 days"},
}

func (c *Console) clientPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	sctx, ok := scope(ec.Request().Context(), v, adminauth.ClientsRead)
	if !ok {
		return c.forbidden(ec, adminauth.ClientsRead)
	}
	id := ec.Param("id")
	rec, err := c.st.Clients().Get(sctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return c.fail(ec, v, http.StatusNotFound, "Not found", "There is no client "+strconv.Quote(id)+" you may see.")
	}
	if err != nil {
		return err
	}
	data := map[string]any{"Client": rec.Entity, "Revision": rec.Revision, "Durations": overrideDurations, "Minted": ec.Get(mintedKey),
		"CanWrite": allowsOn(v, adminauth.ClientsWrite, rec.Entity.Tenant), "CanOverride": allowsOn(v, adminauth.OverridesWrite, rec.Entity.Tenant)}
	if octx, ok := scope(ec.Request().Context(), v, adminauth.OverridesRead); ok {
		o, err := c.st.LimitOverrides().Get(octx, id)
		switch {
		case err == nil:
			data["Override"] = o.Entity
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	if err := c.clientActivity(ec, rec.Entity, data); err != nil {
		return err
	}
	return c.render(ec, status, "client", page{Title: "Clients", Data: data, Form: form, Errors: errs, Error: msg})
}

// recentRequests is how many of a client's requests its page lists.
const recentRequests = 20

// clientWindow is how far back a client's usage chart looks.
const clientWindow = 7 * 24 * time.Hour

// clientActivity adds a client's tier limits, its newest requests (metadata only)
// and its hourly tokens over clientWindow to data, for a viewer who may read the
// usage of the client's tenant, and whether the viewer may mint it a token.
func (c *Console) clientActivity(ec echo.Context, cl policy.Client, data map[string]any) error {
	v, ctx := viewerOf(ec), ec.Request().Context()
	tier, err := c.st.Tiers().Get(ctx, cl.Tier)
	switch {
	case err == nil:
		data["Tier"] = tier.Entity // the client's own limits, which it is told of anyway
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	data["CanMint"] = c.mint && allowsOn(v, adminauth.TokensMint, cl.Tenant)
	if c.limits != nil {
		var t *policy.Tier
		if tier.Entity.Name != "" {
			t = &tier.Entity
		}
		var o *policy.LimitOverride
		if rec, err := c.st.LimitOverrides().Get(ctx, cl.ClientID); err == nil {
			o = &rec.Entity
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		use, err := c.limitsNow(ctx, cl.ClientID, t, o)
		if err != nil {
			c.log.Warn("console: read the limit counters", "client", cl.ClientID, "err", err)
			data["LimitsError"] = "The limit counters in NATS cannot be read now; the control plane's log says why."
		}
		data["Limits"] = use
	}
	if !allowsOn(v, adminauth.UsageRead, cl.Tenant) {
		return nil
	}
	sctx, _ := scope(ctx, v, adminauth.UsageRead)
	recent, err := c.st.RecentRequests(sctx, cl.ClientID, recentRequests)
	if err != nil {
		return err
	}
	data["ShowDeployment"] = v.id.Can(adminauth.DeploymentsRead) // which upstream served it is the operators' business
	to := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	from := to.Add(-clientWindow)
	byHour, err := c.st.UsageByHour(sctx, from, to, "client", cl.ClientID)
	if err != nil {
		return err
	}
	x := hours(from, to)
	var regions []string
	tokens := map[string]map[int64]float64{}
	for _, u := range byHour {
		if tokens[u.Region] == nil {
			regions = append(regions, u.Region)
			tokens[u.Region] = map[int64]float64{}
		}
		tokens[u.Region][u.Hour.Unix()] += float64(u.TokensIn + u.TokensOut)
	}
	slices.Sort(regions)
	data["Recent"], data["ShowActivity"] = recent, true
	data["TokensChart"] = chart{Title: "Tokens per hour, last 7 days", Unit: "tokens", X: x, Series: hourly(x, regions, tokens)}
	return nil
}

// mintToken mints a token for the client with the development issuer, through the
// admin API, and shows it once on the client's page (never in a URL or a log).
func (c *Console) mintToken(ec echo.Context) error {
	id := ec.Param("id")
	ttl, err := strconv.Atoi(ec.FormValue("ttl_seconds"))
	if err != nil || ttl <= 0 {
		ttl = 3600
	}
	res, err := c.call(ec, http.MethodPost, "/tokens", map[string]any{"client_id": id, "ttl_seconds": ttl})
	if err != nil {
		return err
	}
	if res.status != http.StatusOK && res.status != http.StatusCreated {
		p := res.problem()
		msg := p.Message
		if len(p.Fields) > 0 { // the form has no such field to show them beside
			var each []string
			for _, f := range p.Fields {
				each = append(each, f.Field+" "+f.Message)
			}
			msg = strings.Join(each, "; ")
		}
		return c.clientPage(ec, res.status, map[string]string{"for": "3600"}, nil, "No token minted: "+msg)
	}
	var minted struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal(res.body, &minted); err != nil || minted.Token == "" {
		return c.clientPage(ec, http.StatusBadGateway, map[string]string{"for": "3600"}, nil, "The issuer's answer held no token.")
	}
	ec.Set(mintedKey, minted)
	return c.clientPage(ec, http.StatusOK, map[string]string{"for": "3600"}, nil, "")
}

const mintedKey = "console.minted"

// allowsOn reports whether the viewer holds p on tenant.
func allowsOn(v *viewer, p adminauth.Permission, tenant string) bool {
	all, tenants, ok := v.id.Allows(p)
	return ok && (all || slices.Contains(tenants, tenant))
}

// setEnabled enables or disables a client through the admin API, if it has not
// changed since the page was read (the form's revision is the If-Match).
func (c *Console) setEnabled(enabled bool) echo.HandlerFunc {
	return func(ec echo.Context) error {
		id := ec.Param("id")
		res, err := c.call(ec, http.MethodPatch, "/clients/"+url.PathEscape(id), map[string]any{"enabled": enabled},
			"If-Match", ifMatch(ec.FormValue("revision")))
		if err != nil {
			return err
		}
		if res.status != http.StatusOK {
			_, msg := res.fieldErrors()
			if res.status == http.StatusPreconditionFailed {
				msg = "The client changed since this page was loaded; here it is as it is now."
			}
			return c.clientPage(ec, res.status, map[string]string{"for": "3600"}, nil, msg)
		}
		done := "disabled"
		if enabled {
			done = "enabled"
		}
		return ec.Redirect(http.StatusSeeOther, Prefix+"/clients/"+url.PathEscape(id)+"?done="+done)
	}
}

// setOverride sets a client's limit override through the admin API.
func (c *Console) setOverride(ec echo.Context) error {
	id := ec.Param("id")
	form := formValues(ec, "requests_per_minute", "tokens_per_hour", "max_concurrent_requests", "for", "reason")
	body := map[string]any{"reason": form["reason"]}
	errs := map[string]string{}
	for _, f := range []string{"requests_per_minute", "tokens_per_hour", "max_concurrent_requests"} {
		if form[f] == "" {
			continue
		}
		n, err := strconv.ParseInt(form[f], 10, 64)
		if err != nil {
			errs[f] = "must be a whole number"
			continue
		}
		body[f] = n
	}
	ttl, err := strconv.Atoi(form["for"])
	if err != nil {
		errs["ttl_seconds"] = "choose how long the override lasts"
	}
	body["ttl_seconds"] = ttl
	if len(errs) > 0 {
		return c.clientPage(ec, http.StatusUnprocessableEntity, form, errs, "Some fields need attention.")
	}
	res, err := c.call(ec, http.MethodPut, "/clients/"+url.PathEscape(id)+"/limit-override", body)
	if err != nil {
		return err
	}
	if res.status != http.StatusOK {
		errs, msg := res.fieldErrors()
		return c.clientPage(ec, res.status, form, errs, msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/clients/"+url.PathEscape(id)+"?done=override-set")
}

// clearOverride deletes a client's limit override through the admin API.
func (c *Console) clearOverride(ec echo.Context) error {
	id := ec.Param("id")
	res, err := c.call(ec, http.MethodDelete, "/clients/"+url.PathEscape(id)+"/limit-override", nil)
	if err != nil {
		return err
	}
	if res.status != http.StatusNoContent && res.status != http.StatusNotFound {
		_, msg := res.fieldErrors()
		return c.clientPage(ec, res.status, map[string]string{"for": "3600"}, nil, msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/clients/"+url.PathEscape(id)+"?done=override-cleared")
}

// formValues are the named form fields, trimmed.
func formValues(ec echo.Context, names ...string) map[string]string {
	out := make(map[string]string, len(names))
	for _, n := range names {
		out[n] = strings.TrimSpace(ec.FormValue(n))
	}
	return out
}
