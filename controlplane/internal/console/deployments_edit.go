package console

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// registerDeploymentEdits serves the pages that change what the deployments page
// shows, under g: a deployment's settings, a model, a residency rule, and the
// create (and, for fallback maps, delete) forms of providers, models, fallback maps
// and residency rules, which the deployments page renders for a viewer who may use
// them. Every change goes through the admin API as the viewer.
func (c *Console) registerDeploymentEdits(g *echo.Group) {
	g.GET("/deployments/:name", c.deployment)
	g.POST("/deployments/:name", c.saveDeployment)
	g.POST("/providers", c.createProvider)
	g.POST("/models", c.createModel)
	g.GET("/models/:id", c.model)
	g.POST("/models/:id", c.saveModel)
	g.POST("/fallbacks", c.createFallback)
	g.POST("/fallbacks/delete", c.deleteFallback)
	g.POST("/residency", c.createResidency)
	g.GET("/residency/:name", c.residency)
	g.POST("/residency/:name", c.saveResidency)
}

// The settings of a deployment's form, named by their admin API field paths. The
// endpoint's are key custody: only deployments:keys may change them (the API's
// deploymentGuard). The key source, key path and rotation are on the Keys page.
var (
	deploymentPlacement = fieldGroup{"Placement", []formField{
		{Name: "region", Label: "Region", Kind: "text", Hint: "Residency rules allow regions: changing it changes which clients may reach it."},
		{Name: "kind", Label: "Kind", Kind: "select", Options: options(policy.DeploymentKinds)},
		{Name: "enabled", Label: "Enabled: the data planes send it requests", Kind: "check"},
	}}
	deploymentEndpoint = fieldGroup{"Endpoint and TLS", []formField{
		{Name: "base_url", Label: "Base URL", Kind: "text"},
		{Name: "tls.verify", Label: "Verify the upstream's certificate", Kind: "check"},
		{Name: "tls.min_version", Label: "Minimum TLS version", Kind: "select",
			Options: []option{{"", "Go's default"}, {"TLS1.2", "TLS 1.2"}, {"TLS1.3", "TLS 1.3"}}},
		{Name: "tls.pin_sha256", Label: "Pinned public keys (SHA-256)", Kind: "list", Hint: "One per line, base64 or hex; empty: no pinning."},
		{Name: "tls.ca_file", Label: "CA file", Kind: "text", Hint: "A PEM file on the workers; empty: the system's roots."},
	}}
	deploymentTimeouts = fieldGroup{"Timeouts (seconds)", []formField{
		{Name: "timeout_seconds", Label: "First byte", Kind: "number", Hint: "To the first byte of the answer."},
		{Name: "connect_timeout_seconds", Label: "Connect", Kind: "number", Hint: "TCP and TLS; empty: 10."},
		{Name: "total_timeout_seconds", Label: "Total", Kind: "number", Hint: "A whole attempt, streamed answer included; empty: 600."},
	}}
	deploymentRetry = fieldGroup{"Retries", []formField{
		{Name: "retry.max_attempts", Label: "Attempts", Kind: "number", Hint: "1 to 10, the first included."},
		{Name: "retry.backoff", Label: "Backoff", Kind: "select", Options: options([]string{"exponential", "constant"})},
	}}
	deploymentBreaker = fieldGroup{"Circuit breaker", []formField{
		{Name: "circuit_breaker.failure_threshold", Label: "Failure threshold", Kind: "number", Hint: "Failures in a row that open it."},
		{Name: "circuit_breaker.reset_timeout_seconds", Label: "Reset timeout (seconds)", Kind: "number", Hint: "How long it stays open before a probe."},
		{Name: "circuit_breaker.half_open_max_requests", Label: "Half-open probes", Kind: "number", Hint: "Empty: 1."},
	}}
	// deploymentOpen are the groups deployments:write may change.
	deploymentOpen       = []fieldGroup{deploymentPlacement, deploymentTimeouts, deploymentRetry, deploymentBreaker}
	deploymentFieldNames = fieldNames(append([]fieldGroup{deploymentEndpoint}, deploymentOpen...)...)
)

// The settings of a model's form, and of the forms that create providers, fallback
// maps and residency rules.
var (
	modelGroup = fieldGroup{"Model", []formField{
		{Name: "name", Label: "Public name", Kind: "text", Hint: "The model name applications ask for."},
		{Name: "deployment", Label: "Deployment", Kind: "select"},
		{Name: "upstream_model", Label: "Upstream model", Kind: "text", Hint: "The provider's own name for it."},
		{Name: "input_usd_per_1m", Label: "Input $ per 1M tokens", Kind: "decimal"},
		{Name: "output_usd_per_1m", Label: "Output $ per 1M tokens", Kind: "decimal"},
		{Name: "weight", Label: "Weight", Kind: "number", Hint: "0 to 1000: its share of the model's traffic; 0 is a standby; empty: 1."},
	}}
	modelFieldNames = fieldNames(modelGroup)
	providerGroup   = fieldGroup{"New provider", []formField{
		{Name: "name", Label: "Name", Kind: "text"},
		{Name: "kind", Label: "Kind", Kind: "select", Options: options(policy.ProviderKinds)},
	}}
	fallbackGroup = fieldGroup{"New fallback map", []formField{
		{Name: "provider", Label: "Provider", Kind: "select", Hint: "When this provider is failing…"},
		{Name: "from_model", Label: "From model", Kind: "text", Hint: "…requests for this public model…"},
		{Name: "to_model", Label: "To model", Kind: "text", Hint: "…go to this self-hosted model."},
	}}
	residencyGroup = fieldGroup{"Residency rule", []formField{
		{Name: "allowed_regions", Label: "Allowed regions", Kind: "csv", Hint: "Region names, separated by commas."},
		{Name: "endpoint_url", Label: "Endpoint URL", Kind: "text", Hint: "Optional: the data-plane URL its clients should call."},
	}}
	residencyFieldNames = append([]string{"residency"}, fieldNames(residencyGroup)...)
)

// deployment serves one deployment's settings, and the form to change them for
// those who may: the endpoint and TLS only with deployments:keys.
func (c *Console) deployment(ec echo.Context) error {
	return c.deploymentPage(ec, http.StatusOK, nil, nil, "")
}

// deploymentPage renders the deployment's page; form nil shows the deployment as it
// is, at its revision. The fields the viewer may not change always show the
// deployment's values.
func (c *Console) deploymentPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.DeploymentsRead) {
		return c.forbidden(ec, adminauth.DeploymentsRead)
	}
	rec, found, err := readRecord(c, ec, c.st.Deployments(), "deployment", ec.Param("name"))
	if err != nil || !found {
		return err
	}
	current := deploymentValues(rec.Entity)
	canKeys := v.id.Can(adminauth.DeploymentsKeys)
	if form == nil {
		form = current
		form["revision"] = strconv.FormatInt(rec.Revision, 10)
	} else if !canKeys {
		for _, f := range deploymentEndpoint.Fields {
			form[f.Name] = current[f.Name]
		}
	}
	groups := []groupView{viewOf(deploymentPlacement, "", form, errs, false, nil),
		viewOf(deploymentEndpoint, "", form, errs, !canKeys, nil)}
	for _, g := range deploymentOpen[1:] {
		groups = append(groups, viewOf(g, "", form, errs, false, nil))
	}
	data := map[string]any{"Deployment": rec.Entity, "Revision": rec.Revision, "Groups": groups,
		"CanWrite": v.id.Can(adminauth.DeploymentsWrite), "CanKeys": canKeys}
	return c.render(ec, status, "deployment", page{Title: "Deployments", Data: data, Form: form, Errors: errs, Error: msg})
}

// saveDeployment changes a deployment through the admin API (a merge patch, with
// the page's revision as If-Match). It sends the endpoint and TLS only if the form
// did: a browser does not send the disabled fields of a viewer without
// deployments:keys, so that viewer's save leaves them alone, and a forged one is
// the API's to refuse.
func (c *Console) saveDeployment(ec echo.Context) error {
	name := ec.Param("name")
	form := formValues(ec, append(deploymentFieldNames, "revision")...)
	groups := slices.Clone(deploymentOpen)
	if sent(ec, deploymentEndpoint) {
		groups = append(groups, deploymentEndpoint)
	}
	body, errs := settingsBody(form, groups...)
	if len(errs) > 0 {
		return c.deploymentPage(ec, http.StatusUnprocessableEntity, form, errs, "Some fields need attention.")
	}
	res, err := c.call(ec, http.MethodPatch, "/deployments/"+url.PathEscape(name), body, "If-Match", ifMatch(form["revision"]))
	if err != nil {
		return err
	}
	switch res.status {
	case http.StatusOK:
		return ec.Redirect(http.StatusSeeOther, Prefix+"/deployments/"+url.PathEscape(name)+"?done=deployment-saved")
	case http.StatusPreconditionFailed:
		current := map[string]string{}
		if rec, err := c.st.Deployments().Get(ec.Request().Context(), name); err == nil {
			current = deploymentValues(rec.Entity)
		}
		return c.deploymentPage(ec, res.status, nil, nil, changedMsg("deployment", form, current))
	}
	return settle(res, "Not saved", deploymentFieldNames, func(status int, errs map[string]string, msg string) error {
		return c.deploymentPage(ec, status, form, errs, msg)
	})
}

// deploymentValues are d's settings as the form shows them.
func deploymentValues(d policy.Deployment) map[string]string {
	seconds := func(n int) string {
		if n == 0 {
			return "" // the default
		}
		return strconv.Itoa(n)
	}
	return map[string]string{
		"region":          d.Region,
		"kind":            d.Kind,
		"enabled":         strconv.FormatBool(d.Enabled),
		"base_url":        d.BaseURL,
		"tls.verify":      strconv.FormatBool(d.TLS.Verify),
		"tls.min_version": d.TLS.MinVersion,
		"tls.pin_sha256":  strings.Join(d.TLS.PinSHA256, "\n"),
		"tls.ca_file":     d.TLS.CAFile,

		"timeout_seconds":                        strconv.Itoa(d.TimeoutSeconds),
		"connect_timeout_seconds":                seconds(d.ConnectTimeoutSeconds),
		"total_timeout_seconds":                  seconds(d.TotalTimeoutSeconds),
		"retry.max_attempts":                     strconv.Itoa(d.Retry.MaxAttempts),
		"retry.backoff":                          d.Retry.Backoff,
		"circuit_breaker.failure_threshold":      strconv.Itoa(d.CircuitBreaker.FailureThreshold),
		"circuit_breaker.reset_timeout_seconds":  strconv.Itoa(d.CircuitBreaker.ResetTimeoutSeconds),
		"circuit_breaker.half_open_max_requests": seconds(d.CircuitBreaker.HalfOpenMaxRequests),
	}
}

// model serves one model: its deployment, upstream model, prices and weight, and
// the form to change them for those who may.
func (c *Console) model(ec echo.Context) error {
	return c.modelPage(ec, http.StatusOK, nil, nil, "")
}

// modelPage renders the model's page; form nil shows the model as it is, at its
// revision.
func (c *Console) modelPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.ModelsRead) {
		return c.forbidden(ec, adminauth.ModelsRead)
	}
	rec, found, err := readRecord(c, ec, c.st.Models(), "model", ec.Param("id"))
	if err != nil || !found {
		return err
	}
	if form == nil {
		form = modelValues(rec.Entity)
		form["revision"] = strconv.FormatInt(rec.Revision, 10)
	}
	canWrite := v.id.Can(adminauth.ModelsWrite)
	data := map[string]any{"Model": rec.Entity, "Revision": rec.Revision, "CanWrite": canWrite}
	if canWrite {
		deps, err := c.deploymentNames(ec)
		if err != nil {
			return err
		}
		data["Group"] = viewOf(modelGroup, "", form, errs, false, map[string][]string{"deployment": deps})
	}
	return c.render(ec, status, "model", page{Title: "Deployments", Data: data, Form: form, Errors: errs, Error: msg})
}

// saveModel changes a model through the admin API, with the page's revision as
// If-Match.
func (c *Console) saveModel(ec echo.Context) error {
	id := ec.Param("id")
	form := formValues(ec, append(modelFieldNames, "revision")...)
	body, errs := settingsBody(form, modelGroup)
	if len(errs) > 0 {
		return c.modelPage(ec, http.StatusUnprocessableEntity, form, errs, "Some fields need attention.")
	}
	res, err := c.call(ec, http.MethodPatch, "/models/"+url.PathEscape(id), body, "If-Match", ifMatch(form["revision"]))
	if err != nil {
		return err
	}
	switch res.status {
	case http.StatusOK:
		return ec.Redirect(http.StatusSeeOther, Prefix+"/models/"+url.PathEscape(id)+"?done=model-saved")
	case http.StatusPreconditionFailed:
		current := map[string]string{}
		if rec, err := c.st.Models().Get(ec.Request().Context(), id); err == nil {
			current = modelValues(rec.Entity)
		}
		return c.modelPage(ec, res.status, nil, nil, changedMsg("model", form, current))
	}
	return settle(res, "Not saved", modelFieldNames, func(status int, errs map[string]string, msg string) error {
		return c.modelPage(ec, status, form, errs, msg)
	})
}

// residencyValues are r's settings as the form shows them.
func residencyValues(r policy.ResidencyRule) map[string]string {
	return map[string]string{"allowed_regions": strings.Join(r.AllowedRegions, ", "), "endpoint_url": r.EndpointURL}
}

// modelValues are m's settings as the form shows them.
func modelValues(m policy.Model) map[string]string {
	usd := func(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
	return map[string]string{"name": m.Name, "deployment": m.Deployment, "upstream_model": m.UpstreamModel,
		"input_usd_per_1m": usd(m.InputUSDPer1M), "output_usd_per_1m": usd(m.OutputUSDPer1M), "weight": strconv.Itoa(m.Weight)}
}

// deploymentNames are the names of every deployment, for a select.
func (c *Console) deploymentNames(ec echo.Context) ([]string, error) {
	if !viewerOf(ec).id.Can(adminauth.DeploymentsRead) {
		return nil, nil
	}
	deps, err := all(ec.Request().Context(), c.st.Deployments())
	if err != nil {
		return nil, err
	}
	names := make([]string, len(deps))
	for i, d := range deps {
		names[i] = d.Name
	}
	slices.Sort(names)
	return names, nil
}

// residency serves one residency rule: its regions and the deployments they reach,
// and the form to change them for those who may.
func (c *Console) residency(ec echo.Context) error {
	return c.residencyPage(ec, http.StatusOK, nil, nil, "")
}

// residencyPage renders the rule's page; form nil shows the rule as it is, at its
// revision.
func (c *Console) residencyPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.ResidencyRead) {
		return c.forbidden(ec, adminauth.ResidencyRead)
	}
	rec, found, err := readRecord(c, ec, c.st.ResidencyRules(), "residency rule", ec.Param("name"))
	if err != nil || !found {
		return err
	}
	if form == nil {
		form = residencyValues(rec.Entity)
		form["revision"] = strconv.FormatInt(rec.Revision, 10)
	}
	data := map[string]any{"Rule": rec.Entity, "Revision": rec.Revision, "CanWrite": v.id.Can(adminauth.ResidencyWrite),
		"Group": viewOf(residencyGroup, "", form, errs, false, nil)}
	if v.id.Can(adminauth.DeploymentsRead) {
		deps, err := all(ec.Request().Context(), c.st.Deployments())
		if err != nil {
			return err
		}
		var reached []string
		for _, d := range deps {
			if slices.Contains(rec.Entity.AllowedRegions, d.Region) {
				reached = append(reached, d.Name)
			}
		}
		slices.Sort(reached)
		data["Reached"], data["ShowReached"] = reached, true
	}
	return c.render(ec, status, "residency", page{Title: "Deployments", Data: data, Form: form, Errors: errs, Error: msg})
}

// saveResidency changes a residency rule's regions and endpoint URL through the
// admin API, with the page's revision as If-Match.
func (c *Console) saveResidency(ec echo.Context) error {
	name := ec.Param("name")
	form := formValues(ec, "allowed_regions", "endpoint_url", "revision")
	body, _ := settingsBody(form, residencyGroup)
	res, err := c.call(ec, http.MethodPatch, "/residency-rules/"+url.PathEscape(name), body, "If-Match", ifMatch(form["revision"]))
	if err != nil {
		return err
	}
	switch res.status {
	case http.StatusOK:
		return ec.Redirect(http.StatusSeeOther, Prefix+"/residency/"+url.PathEscape(name)+"?done=residency-saved")
	case http.StatusPreconditionFailed:
		current := map[string]string{}
		if rec, err := c.st.ResidencyRules().Get(ec.Request().Context(), name); err == nil {
			current = residencyValues(rec.Entity)
		}
		return c.residencyPage(ec, res.status, nil, nil, changedMsg("residency rule", form, current))
	}
	return settle(res, "Not saved", residencyFieldNames, func(status int, errs map[string]string, msg string) error {
		return c.residencyPage(ec, status, form, errs, msg)
	})
}

// controlSections are the sections of the deployments page that have create
// controls, and the permission each needs.
var controlSections = map[string]adminauth.Permission{
	"providers": adminauth.ProvidersWrite,
	"models":    adminauth.ModelsWrite,
	"fallbacks": adminauth.FallbacksWrite,
	"residency": adminauth.ResidencyWrite,
}

// controlsData is what a section's create controls need.
type controlsData struct {
	Section string
	Open    string // the form to show unfolded: "create" or "delete" after a write that did not go through
	Groups  []groupView
	Maps    []policy.FallbackMap // the fallback maps the delete form offers
}

// sectionControls renders a section's create controls for the deployments page, or
// "" for a viewer who may not use them.
func (c *Console) sectionControls(ec echo.Context, section string) (template.HTML, error) {
	v := viewerOf(ec)
	if !v.id.Can(controlSections[section]) {
		return "", nil
	}
	p, err := c.controlsPage(ec, section, "", map[string]string{"weight": "1", "kind": policy.ProviderOpenAI}, nil)
	if err != nil {
		return "", err
	}
	p.CSRF = v.csrf
	var b bytes.Buffer
	if err := c.pages["deployment_new"].ExecuteTemplate(&b, "controls-"+section, p); err != nil {
		return "", err
	}
	return template.HTML(b.String()), nil // rendered by html/template, escaped there
}

// controlsPage is the page of a section's create controls, with the form's values
// and errors, the form open unfolded.
func (c *Console) controlsPage(ec echo.Context, section, open string, form, errs map[string]string) (page, error) {
	d := controlsData{Section: section, Open: open}
	prefix := "new-" + strings.TrimSuffix(section, "s") + "-"
	switch section {
	case "providers":
		d.Groups = []groupView{viewOf(providerGroup, prefix, form, errs, false, nil)}
	case "models":
		deps, err := c.deploymentNames(ec)
		if err != nil {
			return page{}, err
		}
		id := fieldGroup{"New model", []formField{{Name: "id", Label: "Id", Kind: "text", Hint: "Optional: empty generates one."}}}
		d.Groups = []groupView{viewOf(id, prefix, form, errs, false, nil),
			viewOf(modelGroup, prefix, form, errs, false, map[string][]string{"deployment": deps})}
	case "fallbacks":
		var providers []string
		if viewerOf(ec).id.Can(adminauth.ProvidersRead) {
			ps, err := all(ec.Request().Context(), c.st.Providers())
			if err != nil {
				return page{}, err
			}
			for _, p := range ps {
				providers = append(providers, p.Name)
			}
			slices.Sort(providers)
		}
		g := viewOf(fallbackGroup, prefix, form, errs, false, map[string][]string{"provider": providers})
		if providers == nil {
			g.Fields[0].Kind = "text"
		}
		d.Groups = []groupView{g}
		if viewerOf(ec).id.Can(adminauth.FallbacksRead) {
			maps, err := all(ec.Request().Context(), c.st.FallbackMaps())
			if err != nil {
				return page{}, err
			}
			d.Maps = maps
		}
	case "residency":
		name := fieldGroup{"New residency rule", []formField{{Name: "residency", Label: "Residency", Kind: "text",
			Hint: "The name clients are placed in, e.g. eu; global is reserved."}}}
		d.Groups = []groupView{viewOf(name, prefix, form, errs, false, nil), viewOf(residencyGroup, prefix, form, errs, false, nil)}
	}
	return page{Data: d, Form: form, Errors: errs}, nil
}

// renderControls renders a section's create controls as a page of their own, after
// a write that did not go through: the form with its values and errors, if the
// viewer may use it, else the message alone.
func (c *Console) renderControls(ec echo.Context, section string, status int, form, errs map[string]string, msg string) error {
	if !viewerOf(ec).id.Can(controlSections[section]) {
		return c.fail(ec, viewerOf(ec), status, "Not saved", msg)
	}
	open := "create"
	if _, ok := form["delete_id"]; ok {
		open = "delete"
	}
	p, err := c.controlsPage(ec, section, open, form, errs)
	if err != nil {
		return err
	}
	p.Title, p.Error = "Deployments", msg
	return c.render(ec, status, "deployment_new", p)
}

// create posts a creation body to the admin API's collection; created, it sends the
// browser to next(the created entity's key), else it shows the section's form again.
func (c *Console) create(ec echo.Context, section, collection string, form map[string]string, body map[string]any, shown []string,
	next func(key string) string) error {
	res, err := c.call(ec, http.MethodPost, collection, body)
	if err != nil {
		return err
	}
	if res.status == http.StatusCreated {
		var created map[string]any
		_ = json.Unmarshal(res.body, &created) // the key is read from the answer only for generated ids
		key, _ := created["id"].(string)
		return ec.Redirect(http.StatusSeeOther, next(key))
	}
	return settle(res, "Not created", shown, func(status int, errs map[string]string, msg string) error {
		return c.renderControls(ec, section, status, form, errs, msg)
	})
}

// createProvider creates a provider through the admin API.
func (c *Console) createProvider(ec echo.Context) error {
	form := formValues(ec, fieldNames(providerGroup)...)
	body, _ := settingsBody(form, providerGroup)
	return c.create(ec, "providers", "/providers", form, body, fieldNames(providerGroup), func(string) string {
		return Prefix + "/deployments?done=provider-created"
	})
}

// createModel creates a model through the admin API; an empty id is generated.
func (c *Console) createModel(ec echo.Context) error {
	form := formValues(ec, append([]string{"id"}, modelFieldNames...)...)
	body, errs := settingsBody(form, modelGroup)
	if len(errs) > 0 {
		return c.renderControls(ec, "models", http.StatusUnprocessableEntity, form, errs, "Some fields need attention.")
	}
	if form["id"] != "" {
		body["id"] = form["id"]
	}
	return c.create(ec, "models", "/models", form, body, append([]string{"id"}, modelFieldNames...), func(id string) string {
		return Prefix + "/models/" + url.PathEscape(id) + "?done=model-created"
	})
}

// createFallback creates a fallback map through the admin API.
func (c *Console) createFallback(ec echo.Context) error {
	form := formValues(ec, fieldNames(fallbackGroup)...)
	body, _ := settingsBody(form, fallbackGroup)
	return c.create(ec, "fallbacks", "/fallback-maps", form, body, fieldNames(fallbackGroup), func(string) string {
		return Prefix + "/deployments?done=fallback-created"
	})
}

// deleteFallback deletes a fallback map through the admin API, once the form
// confirms it.
func (c *Console) deleteFallback(ec echo.Context) error {
	form := formValues(ec, "delete_id", "confirm")
	errs := map[string]string{}
	if form["delete_id"] == "" {
		errs["delete_id"] = "choose the fallback map to delete"
	}
	if form["confirm"] != "delete" {
		errs["confirm"] = "tick the box to confirm the deletion"
	}
	if len(errs) > 0 {
		return c.renderControls(ec, "fallbacks", http.StatusUnprocessableEntity, form, errs, "Not deleted: choose the map and confirm it.")
	}
	res, err := c.call(ec, http.MethodDelete, "/fallback-maps/"+url.PathEscape(form["delete_id"]), nil)
	if err != nil {
		return err
	}
	if res.status == http.StatusNoContent {
		return ec.Redirect(http.StatusSeeOther, Prefix+"/deployments?done=fallback-deleted")
	}
	return settle(res, "Not deleted", nil, func(status int, _ map[string]string, msg string) error {
		return c.renderControls(ec, "fallbacks", status, form, nil, msg)
	})
}

// createResidency creates a residency rule through the admin API.
func (c *Console) createResidency(ec echo.Context) error {
	form := formValues(ec, residencyFieldNames...)
	body, _ := settingsBody(form, residencyGroup)
	body["residency"] = form["residency"]
	return c.create(ec, "residency", "/residency-rules", form, body, residencyFieldNames, func(string) string {
		return Prefix + "/residency/" + url.PathEscape(form["residency"]) + "?done=residency-created"
	})
}
