package console

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// The machinery of the console's edit forms: fields named by their admin API paths,
// so that the API's field errors land beside them; the values a page shows; the
// body a form's values make; and what a page says of a write that did not go
// through.

// formField is one setting an edit form shows. Its name is the admin API's field
// path (e.g. "guardrails.pii.input"), so that the API's field errors land beside it.
type formField struct {
	Name, Label, Hint string
	Kind              string // "number", "decimal", "list", "select" or "check"
	Options           []option
}

// option is one choice of a select field.
type option struct{ Value, Label string }

// ID is the field's element id: its name with dashes for dots.
func (f formField) ID() string { return strings.ReplaceAll(f.Name, ".", "-") }

// fieldGroup is one fieldset of a form.
type fieldGroup struct {
	Legend string
	Fields []formField
}

// settingView is one field of a form as a page shows it: its value and error, and
// whether the viewer may change it. Prefix keeps apart the ids of forms that share
// a page.
type settingView struct {
	formField
	Prefix, Value, Error string
	Locked               bool
}

// ID is the field's element id.
func (f settingView) ID() string { return f.Prefix + f.formField.ID() }

// groupView is one fieldset of a form as a page shows it.
type groupView struct {
	Legend string
	Locked bool
	Fields []settingView
}

// viewOf is g with the form's values and errors; with opts, a select field takes
// its options from opts by name, the current value kept among them.
func viewOf(g fieldGroup, prefix string, form, errs map[string]string, locked bool, opts map[string][]string) groupView {
	out := groupView{Legend: g.Legend, Locked: locked}
	for _, f := range g.Fields {
		v := form[f.Name]
		if values, ok := opts[f.Name]; ok {
			if v != "" && !slices.Contains(values, v) {
				values = append([]string{v}, values...)
			}
			f.Options = options(values)
		}
		out.Fields = append(out.Fields, settingView{formField: f, Prefix: prefix, Value: v, Error: errs[f.Name], Locked: locked})
	}
	return out
}

// views are groups with the form's values and errors, for the setting template.
func views(groups []fieldGroup, form, errs map[string]string) []groupView {
	out := make([]groupView, len(groups))
	for i, g := range groups {
		out[i] = viewOf(g, "", form, errs, false, nil)
	}
	return out
}

// settingsBody is the merge patch (or creation body) that sets the fields of groups
// to the form's values: nested objects (tls, retry, circuit_breaker) by their
// fields, an empty number or list as null (the API's default); and what is wrong
// with a number, by field. The admin API validates the rest.
func settingsBody(form map[string]string, groups ...fieldGroup) (map[string]any, map[string]string) {
	body, errs := map[string]any{}, map[string]string{}
	for _, g := range groups {
		for _, f := range g.Fields {
			v, msg := settingValue(f.Kind, form[f.Name])
			if msg != "" {
				errs[f.Name] = msg
				continue
			}
			setPath(body, f.Name, v)
		}
	}
	return body, errs
}

// settingValue is a form's value as the admin API takes it, by the field's kind.
func settingValue(kind, s string) (any, string) {
	switch kind {
	case "check":
		return s == "true", ""
	case "list", "csv":
		if l := splitList(s); l != nil {
			return l, ""
		}
		return nil, ""
	case "number":
		if s == "" {
			return nil, ""
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, "must be a whole number"
		}
		return n, ""
	case "decimal":
		if s == "" {
			return nil, ""
		}
		f, ok := parseNumber(s)
		if !ok {
			return nil, "must be a number"
		}
		return f, ""
	}
	return s, ""
}

// setPath sets the field at the dotted path of body, making the objects on the way.
func setPath(body map[string]any, path string, v any) {
	parent, rest, nested := strings.Cut(path, ".")
	if !nested {
		body[path] = v
		return
	}
	m, ok := body[parent].(map[string]any)
	if !ok {
		m = map[string]any{}
		body[parent] = m
	}
	setPath(m, rest, v)
}

// sent reports whether the posted form carries any of g's fields but its
// checkboxes (which a browser leaves out when unticked, and always leaves out when
// disabled).
func sent(ec echo.Context, g fieldGroup) bool {
	posted := ec.Request().PostForm
	for _, f := range g.Fields {
		if _, ok := posted[f.Name]; ok && f.Kind != "check" {
			return true
		}
	}
	return false
}

// ifMatch is the If-Match of a form's revision; a missing or bad one matches none.
func ifMatch(rev string) string {
	if _, err := strconv.ParseInt(rev, 10, 64); err != nil {
		rev = "0"
	}
	return `"` + rev + `"`
}

// readRecord reads the entity key of coll; not found, it has rendered the 404.
func readRecord[T any](c *Console, ec echo.Context, coll *store.Collection[T], noun, key string) (store.Record[T], bool, error) {
	rec, err := coll.Get(ec.Request().Context(), key)
	if errors.Is(err, store.ErrNotFound) {
		return rec, false, c.fail(ec, viewerOf(ec), http.StatusNotFound, "Not found", "There is no "+noun+" "+strconv.Quote(key)+".")
	}
	return rec, err == nil, err
}

// again renders a form's page once more, with the status, field errors and message
// of a write that did not go through.
type again func(status int, errs map[string]string, msg string) error

// settle answers a write the admin API did not take (its success and 412 are the
// caller's): its field errors beside the fields shown, anything else as the page's
// message, which starts with what (e.g. "Not saved"); a 403 names the permission
// the viewer's roles lack.
func settle(res apiResult, what string, shown []string, page again) error {
	switch res.status {
	case http.StatusUnprocessableEntity:
		errs, msg := formErrors(res, shown)
		return page(res.status, errs, msg)
	case http.StatusForbidden:
		_, msg := res.fieldErrors()
		return page(res.status, nil, what+": your roles do not allow it: "+msg)
	}
	_, msg := res.fieldErrors()
	return page(res.status, nil, what+": "+msg)
}

// changedMsg is what a form based on an old revision of an entity is told: the
// form now shows the entity as it is, and the values the person typed that differ
// from it are listed, to apply again if they still want them. Keeping the typed
// form instead would write the person's stale copy of every other field over
// someone else's change.
func changedMsg(noun string, typed, current map[string]string) string {
	var mine []string
	for _, k := range slices.Sorted(maps.Keys(current)) {
		if v, ok := typed[k]; ok && v != current[k] {
			mine = append(mine, fmt.Sprintf("%s %q", k, v))
		}
	}
	msg := "The " + noun + " changed since you loaded it: the form now shows it as it is, and nothing of yours was saved."
	if len(mine) > 0 {
		msg += " Your values that differ from it: " + strings.Join(mine, ", ") + "."
	}
	return msg
}
