package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// registerTiers serves the tier pages under g.
func (c *Console) registerTiers(g *echo.Group) {
	g.GET("/tiers", c.tiers)
	g.POST("/tiers", c.createTier)
	g.GET("/tiers/:name", c.tier)
	g.POST("/tiers/:name/preview", c.previewTier)
	g.POST("/tiers/:name", c.saveTier)
}

// fieldNames are the names of the fields of groups.
func fieldNames(groups ...fieldGroup) []string {
	var out []string
	for _, g := range groups {
		for _, f := range g.Fields {
			out = append(out, f.Name)
		}
	}
	return out
}

// formErrors are res's field errors for the fields a form shows, and its message,
// which names the problems of the fields the form does not show.
func formErrors(res apiResult, shown []string) (map[string]string, string) {
	errs, msg := res.fieldErrors()
	var other []string
	for f, m := range errs {
		if !slices.Contains(shown, f) {
			other = append(other, f+" "+m)
			delete(errs, f)
		}
	}
	slices.Sort(other)
	if len(other) > 0 {
		msg += " " + strings.Join(other, "; ") + "."
	}
	return errs, msg
}

// tierLimits, tierAccess and tierGuardrails are the settings of a tier's form.
var (
	tierLimits = fieldGroup{"Limits", []formField{
		{Name: "requests_per_minute", Label: "Requests per minute", Kind: "number"},
		{Name: "tokens_per_hour", Label: "Tokens per hour", Kind: "number"},
		{Name: "max_concurrent_requests", Label: "Concurrent requests", Kind: "number"},
		{Name: "default_max_tokens", Label: "Default max tokens", Kind: "number", Hint: "The output budget of a request that asks for none; 0: the gateway's."},
		{Name: "max_output_tokens", Label: "Max output tokens", Kind: "number", Hint: "The largest max_tokens a request may ask for; 0: no cap."},
		{Name: "max_choices", Label: "Max choices", Kind: "number", Hint: "The most completions (n) a request may ask for, up to 128; 0: no tier cap."},
	}}
	tierAccess = fieldGroup{"Access", []formField{
		{Name: "allowed_models", Label: "Allowed models", Kind: "list", Hint: "Public model names, separated by commas or new lines."},
		{Name: "allowed_operations", Label: "Allowed operations", Kind: "list",
			Hint: "Any of " + strings.Join(policy.Operations, ", ") + "; completion is all text generation."},
	}}
	tierGuardrails = guardrailFields()
	tierGroups     = []fieldGroup{tierLimits, tierAccess, tierGuardrails}
	tierNames      = fieldNames(tierGroups...)
)

// guardrailFields are the tier's guardrail policy: each family's action per
// direction, the injection detector's threshold and classifier, and pseudonymise.
func guardrailFields() fieldGroup {
	actions := func(redact bool) []option {
		out := []option{{"", "not set (off)"}}
		for _, a := range policy.GuardrailActions {
			if a != policy.GuardrailRedact || redact {
				out = append(out, option{a, a})
			}
		}
		return out
	}
	g := fieldGroup{Legend: "Guardrails"}
	for _, fam := range []struct{ name, label string }{{"pii", "PII"}, {"secrets", "Secrets"}, {"injection", "Injection"}} {
		for _, dir := range []string{"input", "output"} {
			g.Fields = append(g.Fields, formField{Name: "guardrails." + fam.name + "." + dir, Label: fam.label + ", " + dir,
				Kind: "select", Options: actions(fam.name != "injection")})
		}
	}
	g.Fields = append(g.Fields,
		formField{Name: "guardrails.injection.threshold", Label: "Injection threshold", Kind: "decimal",
			Hint: "The score from 0 to 1 from which a finding counts; empty: the detector's default."},
		formField{Name: "guardrails.injection.classifier", Label: "Injection classifier", Kind: "select",
			Options: []option{{"", "not set (off)"}, {policy.ClassifierOff, policy.ClassifierOff},
				{policy.ClassifierFailOpen, policy.ClassifierFailOpen}, {policy.ClassifierFailClosed, policy.ClassifierFailClosed}}},
		formField{Name: "guardrails.pseudonymise", Label: "Pseudonymise", Kind: "select",
			Options: []option{{"", "not set (no)"}, {"true", "yes"}, {"false", "no"}},
			Hint:    "Put the originals of input placeholders back into the answer."})
	return g
}

// tierRow is one tier on the list page.
type tierRow struct {
	Tier       policy.Tier
	Guardrails string
}

// tiers serves the tier list, with the create form for those who may write.
func (c *Console) tiers(ec echo.Context) error {
	form := map[string]string{"allowed_operations": strings.Join(policy.DefaultOperations, ", ")}
	return c.tiersPage(ec, http.StatusOK, form, nil, "")
}

func (c *Console) tiersPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.TiersRead) {
		return c.forbidden(ec, adminauth.TiersRead)
	}
	q := strings.TrimSpace(ec.QueryParam("q"))
	pg, err := listPage(ec, c.st.Tiers(), ec.Request().Context(), store.Filter{Search: q})
	if err != nil {
		return err
	}
	rows := make([]tierRow, len(pg.Items))
	for i, r := range pg.Items {
		rows[i] = tierRow{Tier: r.Entity, Guardrails: guardrailSummary(r.Entity.Guardrails)}
	}
	data := map[string]any{"Items": rows, "Next": pg.Next, "Query": q, "CanWrite": v.id.Can(adminauth.TiersWrite),
		"Groups": views([]fieldGroup{tierLimits, tierAccess}, form, errs)}
	return c.render(ec, status, "tiers", page{Title: "Tiers", Data: data, Form: form, Errors: errs, Error: msg})
}

// createTier creates a tier through the admin API from its name, limits and lists;
// its guardrails are set on the tier's page.
func (c *Console) createTier(ec echo.Context) error {
	form := formValues(ec, append([]string{"name"}, fieldNames(tierLimits, tierAccess)...)...)
	body := map[string]any{"name": form["name"]}
	errs := map[string]string{}
	for _, f := range tierLimits.Fields {
		n, msg := wholeNumber(form[f.Name])
		if msg != "" {
			errs[f.Name] = msg
		}
		body[f.Name] = n
	}
	for _, f := range tierAccess.Fields {
		body[f.Name] = nonNil(splitList(form[f.Name]))
	}
	if len(errs) > 0 {
		return c.tiersPage(ec, http.StatusUnprocessableEntity, form, errs, "Some fields need attention.")
	}
	res, err := c.call(ec, http.MethodPost, "/tiers", body)
	if err != nil {
		return err
	}
	if res.status != http.StatusCreated {
		errs, msg := formErrors(res, append([]string{"name"}, fieldNames(tierLimits, tierAccess)...))
		return c.tiersPage(ec, res.status, form, errs, msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/tiers/"+url.PathEscape(form["name"])+"?done=tier-created")
}

// tier serves one tier: its settings, the clients on it, and the form to change it
// for those who may.
func (c *Console) tier(ec echo.Context) error {
	return c.tierPage(ec, http.StatusOK, nil, nil, "")
}

// tierPage renders the tier's page; form nil shows the tier as it is, at its
// revision.
func (c *Console) tierPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.TiersRead) {
		return c.forbidden(ec, adminauth.TiersRead)
	}
	rec, found, err := c.readTier(ec)
	if err != nil || !found {
		return err
	}
	if form == nil {
		form = tierValues(rec.Entity)
		form["revision"] = strconv.FormatInt(rec.Revision, 10)
	}
	data := map[string]any{"Tier": rec.Entity, "Revision": rec.Revision, "Guardrails": guardrailSummary(rec.Entity.Guardrails),
		"Groups": views(tierGroups, form, errs), "CanWrite": v.id.Can(adminauth.TiersWrite)}
	if err := c.countClients(ec, rec.Entity.Name, data); err != nil {
		return err
	}
	return c.render(ec, status, "tier", page{Title: "Tiers", Data: data, Form: form, Errors: errs, Error: msg})
}

// readTier reads the tier the URL names; not found, it has rendered the 404.
func (c *Console) readTier(ec echo.Context) (store.Record[policy.Tier], bool, error) {
	name := ec.Param("name")
	rec, err := c.st.Tiers().Get(ec.Request().Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return rec, false, c.fail(ec, viewerOf(ec), http.StatusNotFound, "Not found", "There is no tier "+strconv.Quote(name)+".")
	}
	return rec, err == nil, err
}

// countClients sets data["Clients"] to the number of clients on the tier, as text,
// if the viewer may read clients.
func (c *Console) countClients(ec echo.Context, tier string, data map[string]any) error {
	sctx, ok := scope(ec.Request().Context(), viewerOf(ec), adminauth.ClientsRead)
	if !ok {
		return nil
	}
	n, err := c.st.Clients().Count(sctx, store.Filter{Equals: map[string]string{"tier": tier}})
	if err != nil {
		return err
	}
	data["Clients"] = strconv.Itoa(n)
	return nil
}

// tierChangedMsg is what a form based on an old revision of the tier is told.
const tierChangedMsg = "The tier changed since you loaded it: its settings as they are now are above. " +
	"The form keeps your values; preview again to compare them with the current settings."

// previewTier shows what the edit form would change: each changed field before and
// after, and the clients on the tier; its Save form carries the values and the
// revision they were compared with. With step=edit it shows the form again.
func (c *Console) previewTier(ec echo.Context) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.TiersWrite) {
		return c.forbidden(ec, adminauth.TiersWrite)
	}
	form := formValues(ec, slices.Concat(tierNames, []string{"revision", "step"})...)
	if form["step"] == "edit" {
		return c.tierPage(ec, http.StatusOK, form, nil, "")
	}
	rec, found, err := c.readTier(ec)
	if err != nil || !found {
		return err
	}
	if form["revision"] != strconv.FormatInt(rec.Revision, 10) {
		form["revision"] = strconv.FormatInt(rec.Revision, 10)
		return c.tierPage(ec, http.StatusPreconditionFailed, form, nil, tierChangedMsg)
	}
	proposed, errs := parseTier(rec.Entity, form)
	if len(errs) > 0 {
		return c.tierPage(ec, http.StatusUnprocessableEntity, form, errs, "Some fields need attention.")
	}
	values := tierValues(proposed)
	values["revision"] = form["revision"]
	data := map[string]any{"Tier": rec.Entity, "Revision": rec.Revision, "Changes": tierDiff(rec.Entity, proposed), "Names": tierNames}
	if err := c.countClients(ec, rec.Entity.Name, data); err != nil {
		return err
	}
	return c.render(ec, http.StatusOK, "tier_preview", page{Title: "Tiers", Data: data, Form: values})
}

// saveTier writes a previewed change through the admin API, if the tier is still at
// the revision the preview compared with (If-Match).
func (c *Console) saveTier(ec echo.Context) error {
	form := formValues(ec, slices.Concat(tierNames, []string{"revision"})...)
	name := ec.Param("name")
	proposed, errs := parseTier(policy.Tier{Name: name}, form)
	if len(errs) > 0 {
		return c.tierPage(ec, http.StatusUnprocessableEntity, form, errs, "Some fields need attention.")
	}
	res, err := c.call(ec, http.MethodPatch, "/tiers/"+url.PathEscape(name), tierBody(proposed), "If-Match", ifMatch(form["revision"]))
	if err != nil {
		return err
	}
	switch res.status {
	case http.StatusOK:
		return ec.Redirect(http.StatusSeeOther, Prefix+"/tiers/"+url.PathEscape(name)+"?done=tier-saved")
	case http.StatusPreconditionFailed:
		if rec, err := c.st.Tiers().Get(ec.Request().Context(), name); err == nil {
			form["revision"] = strconv.FormatInt(rec.Revision, 10)
		}
		return c.tierPage(ec, res.status, form, nil, tierChangedMsg)
	case http.StatusUnprocessableEntity:
		errs, msg := formErrors(res, tierNames)
		return c.tierPage(ec, res.status, form, errs, msg)
	}
	_, msg := res.fieldErrors()
	return c.fail(ec, viewerOf(ec), res.status, "Not saved", msg)
}

// tierValues are t's settings as the form shows them.
func tierValues(t policy.Tier) map[string]string {
	out := map[string]string{
		"requests_per_minute":     strconv.FormatInt(t.RequestsPerMinute, 10),
		"tokens_per_hour":         strconv.FormatInt(t.TokensPerHour, 10),
		"max_concurrent_requests": strconv.FormatInt(t.MaxConcurrentRequests, 10),
		"default_max_tokens":      strconv.FormatInt(t.DefaultMaxTokens, 10),
		"max_output_tokens":       strconv.FormatInt(t.MaxOutputTokens, 10),
		"max_choices":             strconv.FormatInt(t.MaxChoices, 10),
		"allowed_models":          strings.Join(t.AllowedModels, ", "),
		"allowed_operations":      strings.Join(t.AllowedOperations, ", "),
	}
	g := t.Guardrails
	for name, f := range map[string]policy.GuardrailFamily{"pii": g.PII, "secrets": g.Secrets, "injection": g.Injection} {
		out["guardrails."+name+".input"], out["guardrails."+name+".output"] = f.Input, f.Output
	}
	if th := g.Injection.Threshold; th != nil {
		out["guardrails.injection.threshold"] = strconv.FormatFloat(*th, 'g', -1, 64)
	}
	out["guardrails.injection.classifier"] = g.Injection.Classifier
	if p := g.Pseudonymise; p != nil {
		out["guardrails.pseudonymise"] = strconv.FormatBool(*p)
	}
	return out
}

// parseTier is base with the settings of the form, and what the console can tell
// is wrong with them by field: a number that is not one, a limit that is not
// positive, an unknown operation, a guardrail setting policy refuses. The admin API
// validates the rest when the change is saved.
func parseTier(base policy.Tier, form map[string]string) (policy.Tier, map[string]string) {
	t := base
	errs := map[string]string{}
	for _, f := range []struct {
		name     string
		to       *int64
		positive bool
	}{
		{"requests_per_minute", &t.RequestsPerMinute, true},
		{"tokens_per_hour", &t.TokensPerHour, true},
		{"max_concurrent_requests", &t.MaxConcurrentRequests, true},
		{"default_max_tokens", &t.DefaultMaxTokens, false},
		{"max_output_tokens", &t.MaxOutputTokens, false},
		{"max_choices", &t.MaxChoices, false},
	} {
		n, msg := wholeNumber(form[f.name])
		switch {
		case msg != "":
			errs[f.name] = msg
		case f.positive && n <= 0:
			errs[f.name] = "must be a positive integer"
		case n < 0:
			errs[f.name] = "must be zero or a positive integer"
		}
		*f.to = n
	}
	t.AllowedModels = splitList(form["allowed_models"])
	t.AllowedOperations = splitList(form["allowed_operations"])
	var unknown []string
	for _, op := range t.AllowedOperations {
		if !slices.Contains(policy.Operations, op) {
			unknown = append(unknown, op)
		}
	}
	if len(unknown) > 0 {
		errs["allowed_operations"] = "unknown operations: " + strings.Join(unknown, ", ") + "; allowed are " + strings.Join(policy.Operations, ", ")
	}

	g := &t.Guardrails
	for name, f := range map[string]*policy.GuardrailFamily{"pii": &g.PII, "secrets": &g.Secrets, "injection": &g.Injection} {
		f.Input, f.Output = form["guardrails."+name+".input"], form["guardrails."+name+".output"]
	}
	g.Injection.Classifier, g.Injection.Threshold, g.Pseudonymise = form["guardrails.injection.classifier"], nil, nil
	if s := form["guardrails.injection.threshold"]; s != "" {
		th, ok := parseNumber(s)
		if !ok {
			errs["guardrails.injection.threshold"] = "must be a number from 0 to 1"
		}
		g.Injection.Threshold = &th
	}
	switch s := form["guardrails.pseudonymise"]; s {
	case "":
	case "true", "false":
		p := s == "true"
		g.Pseudonymise = &p
	default:
		errs["guardrails.pseudonymise"] = "must be yes, no or not set"
	}
	for _, p := range g.Problems("guardrails.") {
		if _, ok := errs[p[0]]; !ok {
			errs[p[0]] = p[1]
		}
	}
	return t, errs
}

// tierBody is the merge patch that sets every setting the form shows to t's, each
// guardrail field it shows included (a nested object merges field by field).
func tierBody(t policy.Tier) map[string]any {
	family := func(f policy.GuardrailFamily) map[string]any {
		return map[string]any{"input": f.Input, "output": f.Output}
	}
	g := t.Guardrails
	injection := family(g.Injection)
	injection["threshold"], injection["classifier"] = g.Injection.Threshold, g.Injection.Classifier
	return map[string]any{
		"requests_per_minute":     t.RequestsPerMinute,
		"tokens_per_hour":         t.TokensPerHour,
		"max_concurrent_requests": t.MaxConcurrentRequests,
		"default_max_tokens":      t.DefaultMaxTokens,
		"max_output_tokens":       t.MaxOutputTokens,
		"max_choices":             t.MaxChoices,
		"allowed_models":          nonNil(t.AllowedModels),
		"allowed_operations":      nonNil(t.AllowedOperations),
		"guardrails": map[string]any{"pii": family(g.PII), "secrets": family(g.Secrets), "injection": injection,
			"pseudonymise": g.Pseudonymise},
	}
}

// tierDiff lists the settings that differ between two tiers, a guardrail family at
// a time.
func tierDiff(before, after policy.Tier) []fieldChange {
	for _, t := range []*policy.Tier{&before, &after} {
		t.AllowedModels, t.AllowedOperations = nonNil(t.AllowedModels), nonNil(t.AllowedOperations)
	}
	var out []fieldChange
	for _, ch := range diff(jsonOf(before), jsonOf(after)) {
		if ch.Field != "guardrails" {
			out = append(out, ch)
			continue
		}
		for _, g := range diff(jsonOf(before.Guardrails), jsonOf(after.Guardrails)) {
			g.Field = "guardrails." + g.Field
			out = append(out, g)
		}
	}
	return out
}

func jsonOf(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// guardrailSummary says in a line which guardrails a tier turns on.
func guardrailSummary(g policy.Guardrails) string {
	var parts []string
	for _, fam := range []struct {
		name string
		f    policy.GuardrailFamily
	}{{"PII", g.PII}, {"secrets", g.Secrets}, {"injection", g.Injection}} {
		var dirs []string
		for _, d := range [][2]string{{"input", fam.f.Input}, {"output", fam.f.Output}} {
			if d[1] != "" && d[1] != policy.GuardrailOff {
				dirs = append(dirs, d[0]+" "+d[1])
			}
		}
		if len(dirs) > 0 {
			parts = append(parts, fam.name+": "+strings.Join(dirs, ", "))
		}
	}
	if p := g.Pseudonymise; p != nil && *p {
		parts = append(parts, "pseudonymised")
	}
	if len(parts) == 0 {
		return "off"
	}
	return strings.Join(parts, "; ")
}

// wholeNumber reads a form's integer; empty is 0.
func wholeNumber(s string) (int64, string) {
	if s == "" {
		return 0, ""
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, "must be a whole number"
	}
	return n, ""
}

// splitList reads a list separated by commas or new lines; nil if empty.
func splitList(s string) []string {
	var out []string
	for item := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' }) {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
