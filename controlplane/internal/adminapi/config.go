package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/gatewayconfig"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Paths of the declarative configuration: POST applies (or plans) a gateway.yaml,
// GET exports the live configuration as one.
const (
	configApplyPath = "/config\\:apply" // echo's escape for the literal ":apply"
	configPath      = "/config"
)

func (a *API) registerConfig(g *echo.Group) {
	g.POST(configApplyPath, a.applyConfig)
	g.GET(configPath, a.exportConfig)
}

// configKind is one resource type as apply and export see it.
type configKind interface {
	resource() string
	section() string // the file's section of it
	perms() (read, write adminauth.Permission)
	// decode is a file's body of the entity as it would be stored, validated as a
	// PUT would validate it (omitted fields take the creation defaults).
	decode(body gatewayconfig.Body) (any, []apierr.FieldError)
	// live reads every entity, by key.
	live(ctx context.Context) (map[string]any, error)
	// shown is an entity in the API's JSON form, as an object.
	shown(e any) (map[string]any, error)
	// guard checks a write the kind's write permission does not settle alone (nil
	// before: a create; nil after: a delete).
	guard(c echo.Context, before, after any) error
	put(b *store.Batch, e any)
	del(b *store.Batch, key string)
	// optional kinds are left out of a plan or an export for a caller who may not
	// read them, unless the file holds some; pruned kinds lose what the file does
	// not hold under --prune.
	optional() bool
	pruned() bool
}

// configOf adapts a resource to configKind.
type configOf[T any] struct {
	r           *resource[T]
	sectionName string
	read, write adminauth.Permission
	// guardFn is extra checking beyond the resource's own guard (nil: none).
	guardFn func(c echo.Context, before, after *T) error
}

func (k configOf[T]) resource() string                          { return k.r.path }
func (k configOf[T]) section() string                           { return k.sectionName }
func (k configOf[T]) perms() (read, write adminauth.Permission) { return k.read, k.write }
func (k configOf[T]) optional() bool                            { return false }
func (k configOf[T]) pruned() bool                              { return true }
func (k configOf[T]) put(b *store.Batch, e any)                 { store.PutIn(b, k.r.coll, e.(T)) }
func (k configOf[T]) del(b *store.Batch, key string)            { store.DeleteIn(b, k.r.coll, key) }

// objectOf is a file's body as the admin API's decoders read a request's.
func objectOf(body gatewayconfig.Body) (map[string]json.RawMessage, []apierr.FieldError) {
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, []apierr.FieldError{{Message: "cannot be read as JSON: " + err.Error()}}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, []apierr.FieldError{{Message: "is not an object"}}
	}
	return obj, nil
}

func (k configOf[T]) decode(body gatewayconfig.Body) (any, []apierr.FieldError) {
	obj, problems := objectOf(body)
	if problems != nil {
		return nil, problems
	}
	rep := &report{}
	e := k.r.defaults()
	k.r.decode(rep, obj, &e)
	key := *k.r.coll.Key(&e)
	rep.check(k.r.coll.KeyName(), k.r.key.valid(key), k.r.key.message)
	rep.check(k.r.coll.KeyName(), !slices.Contains(k.r.reserved, key),
		fmt.Sprintf("%q is reserved: /%s/%s is another endpoint", key, k.r.path, key))
	k.r.validate(rep, &e)
	if len(rep.fields) > 0 {
		return nil, rep.fields
	}
	if k.r.fromAPI != nil {
		k.r.fromAPI(&e)
	}
	return e, nil
}

func (k configOf[T]) live(ctx context.Context) (map[string]any, error) {
	out := map[string]any{}
	for cursor := ""; ; {
		pg, err := k.r.coll.List(ctx, cursor, maxLimit)
		if err != nil {
			return nil, err
		}
		for _, rec := range pg.Items {
			out[*k.r.coll.Key(&rec.Entity)] = rec.Entity
		}
		if cursor = pg.Next; cursor == "" {
			return out, nil
		}
	}
}

func (k configOf[T]) shown(e any) (map[string]any, error) {
	t := e.(T)
	if k.r.toAPI != nil {
		k.r.toAPI(&t)
	}
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	return m, d.Decode(&m)
}

func (k configOf[T]) guard(c echo.Context, before, after any) error {
	var b, a *T
	if before != nil {
		t := before.(T)
		b = &t
	}
	if after != nil {
		t := after.(T)
		a = &t
	}
	if k.guardFn != nil {
		if err := k.guardFn(c, b, a); err != nil {
			return err
		}
	}
	if k.r.guard != nil && a != nil {
		return k.r.guard(c, b, a)
	}
	return nil
}

// configKinds are the resource types a gateway.yaml holds, in gatewayconfig.Resources
// order (what an entity names first).
func (a *API) configKinds() []configKind {
	// Creating or deleting a deployment needs deployments:keys, as its routes do.
	deploymentKeys := func(c echo.Context, before, after *policy.Deployment) error {
		if (before == nil || after == nil) && !adminauth.IdentityOf(c).Can(adminauth.DeploymentsKeys) {
			return forbidden(adminauth.DeploymentsKeys, ", which creating or deleting a deployment needs")
		}
		return nil
	}
	return []configKind{
		configOf[policy.Tenant]{r: a.tenants(), sectionName: "tenants", read: adminauth.TenantsRead, write: adminauth.TenantsWrite},
		configOf[policy.Tier]{r: a.tiers(), sectionName: "tiers", read: adminauth.TiersRead, write: adminauth.TiersWrite},
		configOf[policy.ResidencyRule]{r: a.residencyRules(), sectionName: "residency_rules", read: adminauth.ResidencyRead, write: adminauth.ResidencyWrite},
		configOf[policy.Provider]{r: a.providers(), sectionName: "providers", read: adminauth.ProvidersRead, write: adminauth.ProvidersWrite},
		configOf[policy.Deployment]{r: a.deployments(), sectionName: "deployments", read: adminauth.DeploymentsRead, write: adminauth.DeploymentsWrite,
			guardFn: deploymentKeys},
		configOf[policy.Model]{r: a.models(), sectionName: "models", read: adminauth.ModelsRead, write: adminauth.ModelsWrite},
		configOf[policy.FallbackMap]{r: a.fallbackMaps(), sectionName: "fallback_maps", read: adminauth.FallbacksRead, write: adminauth.FallbacksWrite},
		configOf[policy.Client]{r: a.clients(), sectionName: "clients", read: adminauth.ClientsRead, write: adminauth.ClientsWrite},
		configOf[store.AnomalyRule]{r: a.anomalyRules(), sectionName: "anomaly_rules", read: adminauth.AnomalyRulesRead, write: adminauth.AnomalyRulesWrite},
		configOf[policy.GatewaySettings]{r: a.settings(), sectionName: "settings", read: adminauth.SettingsRead, write: adminauth.SettingsWrite},
		principalsKind{a},
	}
}

// principalsKind is the principals as apply and export see them: people and service
// accounts with their manual role bindings (those from the identity provider are
// its). Apply never deletes one: --prune leaves principals alone, so that a file
// cannot lock its own appliers out.
type principalsKind struct{ a *API }

func (principalsKind) resource() string { return "principals" }
func (principalsKind) section() string  { return "principals" }
func (principalsKind) perms() (read, write adminauth.Permission) {
	return adminauth.PrincipalsRead, adminauth.PrincipalsWrite
}
func (principalsKind) optional() bool                     { return true }
func (principalsKind) pruned() bool                       { return false }
func (principalsKind) guard(echo.Context, any, any) error { return nil }
func (principalsKind) put(b *store.Batch, e any)          { store.PutPrincipalIn(b, e.(store.Principal)) }
func (principalsKind) del(*store.Batch, string)           {}

// decode validates a principal's body as POST /principals does.
func (principalsKind) decode(body gatewayconfig.Body) (any, []apierr.FieldError) {
	obj, problems := objectOf(body)
	if problems != nil {
		return nil, problems
	}
	rep := &report{}
	rolesRaw := obj["roles"]
	delete(obj, "roles")
	req := principalRequest{Kind: store.PrincipalService}
	decodeObject(rep, "", obj, reflect.ValueOf(&req).Elem(), reflect.ValueOf(principalRequest{Kind: store.PrincipalService}))
	req.Roles = decodeRoles(rep, rolesRaw)
	seen := map[store.RoleBinding]bool{}
	for i, b := range req.Roles {
		rep.check(fmt.Sprintf("roles[%d]", i), !seen[b], "is listed twice")
		seen[b] = true
	}
	rep.check("name", principalName.valid(req.Name), principalName.message)
	ok, msg := oneOf(req.Kind, []string{store.PrincipalPerson, store.PrincipalService})
	rep.check("kind", ok, msg)
	rep.check("display_name", text(req.DisplayName, 200), "must be printable text of at most 200 characters")
	rep.check("email", req.Email == "" || (text(req.Email, 254) && strings.Contains(req.Email, "@")), "must be an email address")
	if len(rep.fields) > 0 {
		return nil, rep.fields
	}
	return store.Principal{Name: req.Name, Kind: req.Kind, DisplayName: req.DisplayName, Email: req.Email,
		Disabled: req.Disabled, Roles: req.Roles}, nil
}

func (k principalsKind) live(ctx context.Context) (map[string]any, error) {
	ps, err := k.a.st.Principals(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(ps))
	for _, p := range ps {
		out[p.Name] = p
	}
	return out, nil
}

// shown is a principal as the file holds it: its manual bindings only.
func (principalsKind) shown(e any) (map[string]any, error) {
	p := e.(store.Principal)
	roles := []any{}
	for _, b := range p.Roles {
		if b.Source != "" && b.Source != store.BindingManual {
			continue
		}
		r := map[string]any{"role": b.Role}
		if b.Tenant != "" {
			r["tenant"] = b.Tenant
		}
		roles = append(roles, r)
	}
	slices.SortFunc(roles, func(x, y any) int {
		a, b := x.(map[string]any), y.(map[string]any)
		return strings.Compare(fmt.Sprint(a["role"], a["tenant"]), fmt.Sprint(b["role"], b["tenant"]))
	})
	return map[string]any{"name": p.Name, "kind": p.Kind, "display_name": p.DisplayName, "email": p.Email,
		"disabled": p.Disabled, "roles": roles}, nil
}

// configChange is one write of a plan.
type configChange struct {
	Action   string        `json:"action"` // create, update or delete
	Resource string        `json:"resource"`
	Key      string        `json:"key"`
	Fields   []configField `json:"fields,omitempty"` // an update's changed fields
	entity   any           // what to write (nil for a delete)
	kind     configKind
}

// configField is one top-level field an update changes.
type configField struct {
	Field  string `json:"field"`
	Before any    `json:"before"`
	After  any    `json:"after"`
}

// configPlan is what an apply did or would do.
type configPlan struct {
	Version int64          `json:"version"` // the policy version the plan was made at, or the applied one
	Applied bool           `json:"applied"`
	Changes []configChange `json:"changes"`
	// Unmanaged counts live entities the file does not hold, which only --prune
	// deletes.
	Unmanaged int `json:"unmanaged"`
}

// configProblem is a problem of the file, where it is.
type configProblem = gatewayconfig.Problem

// applyConfig answers POST /config:apply[?dry_run=true][&prune=true] with a
// gateway.yaml body: every problem of the file at once (422, nothing applied), or
// the plan (create, update, delete per resource, with field diffs) and, unless a dry
// run, the plan applied in one transaction as one policy version. An If-Match with
// a plan's version refuses (412) to apply when the policy has changed since.
func (a *API) applyConfig(c echo.Context) error {
	raw, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, gatewayconfig.MaxFileBytes))
	if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
		return apierr.New(apierr.InvalidRequest, "the request body is larger than %d bytes", gatewayconfig.MaxFileBytes)
	}
	if err != nil {
		return apierr.Wrap(apierr.InvalidRequest, err, "the request body could not be read")
	}
	q := c.QueryParams()
	dryRun, prune := q.Get("dry_run") == "true", q.Get("prune") == "true"
	var expect int64
	if m := c.Request().Header.Get("If-Match"); m != "" {
		if expect, err = strconv.ParseInt(strings.Trim(strings.TrimPrefix(m, "W/"), `"`), 10, 64); err != nil || expect <= 0 {
			return apierr.New(apierr.InvalidRequest, "If-Match must be the policy version of a plan, e.g. \"42\"")
		}
	}
	doc, err := gatewayconfig.Parse("gateway.yaml", raw)
	if err != nil {
		var problems gatewayconfig.Problems
		if errors.As(err, &problems) {
			return configInvalid(c, problems)
		}
		return err
	}
	entities, problems := doc.Entities()
	kinds := a.configKinds()
	byResource := map[string]configKind{}
	for _, k := range kinds {
		byResource[k.resource()] = k
	}
	id := adminauth.IdentityOf(c)
	desired := map[string]map[string]any{}                   // resource → key → entity
	entityOf := map[string]map[string]gatewayconfig.Entity{} // resource → key → where it is
	// A setting the file format refused is not reported again by the entity's
	// validation (a refused key source is also a missing one).
	reported := map[[2]int]bool{}
	for _, p := range problems {
		reported[[2]int{p.Line, p.Column}] = true
	}
	for _, e := range entities {
		k := byResource[e.Resource]
		v, fields := k.decode(e.Body)
		for _, f := range fields {
			line, col := doc.Pos(e.FieldPath(f.Field)...)
			if reported[[2]int{line, col}] {
				continue
			}
			problems = append(problems, configProblem{Line: line, Column: col,
				Path: strings.Join(e.FieldPath(f.Field), "."), Message: f.Message})
		}
		if v != nil {
			if desired[e.Resource] == nil {
				desired[e.Resource], entityOf[e.Resource] = map[string]any{}, map[string]gatewayconfig.Entity{}
			}
			desired[e.Resource][e.Key], entityOf[e.Resource][e.Key] = v, e
		}
	}
	if len(problems) > 0 {
		slices.SortStableFunc(problems, func(x, y configProblem) int {
			if x.Line != y.Line {
				return x.Line - y.Line
			}
			return x.Column - y.Column
		})
		return configInvalid(c, problems)
	}
	ctx := c.Request().Context()
	version, err := a.st.PolicyVersion(ctx)
	if err != nil {
		return err
	}
	plan := configPlan{Version: version, Changes: []configChange{}}
	lives := map[string]map[string]any{} // resource → key → live entity, as planned
	var deletes []configChange
	for _, k := range kinds {
		read, _ := k.perms()
		if all, _, ok := id.Allows(read); !ok || !all {
			if k.optional() && len(desired[k.resource()]) == 0 {
				continue
			}
			return forbidden(read, ", which a configuration apply needs to compare the file with the live "+k.resource())
		}
		live, err := k.live(ctx)
		if err != nil {
			return err
		}
		lives[k.resource()] = live
		want := desired[k.resource()]
		for _, key := range slices.Sorted(maps.Keys(want)) {
			after, err := k.shown(want[key])
			if err != nil {
				return err
			}
			before, exists := live[key]
			if !exists {
				plan.Changes = append(plan.Changes, configChange{Action: "create", Resource: k.resource(), Key: key, entity: want[key], kind: k})
				continue
			}
			was, err := k.shown(before)
			if err != nil {
				return err
			}
			if was["kind"] != nil && k.resource() == "principals" && was["kind"] != after["kind"] {
				e := entityOf[k.resource()][key]
				line, col := doc.Pos(e.FieldPath("kind")...)
				return configInvalid(c, gatewayconfig.Problems{{Line: line, Column: col, Path: strings.Join(e.FieldPath("kind"), "."),
					Message: fmt.Sprintf("%s is a %v: a principal's kind cannot change", key, was["kind"])}})
			}
			if fields := diffFields(was, after); len(fields) > 0 {
				plan.Changes = append(plan.Changes, configChange{Action: "update", Resource: k.resource(), Key: key, Fields: fields,
					entity: want[key], kind: k})
			}
		}
		for _, key := range slices.Sorted(maps.Keys(live)) {
			if _, ok := want[key]; ok {
				continue
			}
			if !k.pruned() {
				continue // never deleted, so not counted
			}
			if !prune {
				plan.Unmanaged++
				continue
			}
			deletes = append(deletes, configChange{Action: "delete", Resource: k.resource(), Key: key, kind: k})
		}
	}
	// Deletions go last, in reverse order: what names an entity goes before it.
	slices.Reverse(deletes)
	plan.Changes = append(plan.Changes, deletes...)
	if dryRun {
		return c.JSON(http.StatusOK, plan)
	}
	if expect != 0 && expect != version {
		return apierr.New(apierr.PreconditionFailed, "the configuration changed since the plan (policy version %d, now %d): plan again, or apply with --force", expect, version)
	}
	var b store.Batch
	for _, ch := range plan.Changes {
		_, write := ch.kind.perms()
		if all, _, ok := id.Allows(write); !ok || !all {
			return forbidden(write, fmt.Sprintf(", which the plan's %s of %s %q needs", ch.Action, ch.Resource, ch.Key))
		}
		var before any
		if ch.Action != "create" {
			before = lives[ch.Resource][ch.Key]
		}
		if err := ch.kind.guard(c, before, ch.entity); err != nil {
			return err
		}
		if ch.Action == "delete" {
			ch.kind.del(&b, ch.Key)
		} else {
			ch.kind.put(&b, ch.entity)
		}
	}
	// The plan above, and each guard's judgment, hold only for the version they were
	// made at: the batch lands on that version or not at all (--force only skips
	// comparing it with the caller's earlier plan).
	applied, err := a.st.ApplyBatch(ctx, version, &b)
	if errors.Is(err, store.ErrStale) {
		return apierr.New(apierr.PreconditionFailed, "the configuration changed while this apply ran: apply again")
	}
	if err != nil {
		return configStoreError(err)
	}
	if b.Len() > 0 {
		a.changed()
	}
	plan.Version, plan.Applied = applied, true
	return c.JSON(http.StatusOK, plan)
}

// configInvalid answers 422 with every problem of the file.
func configInvalid(c echo.Context, problems gatewayconfig.Problems) error {
	fields := make([]apierr.FieldError, len(problems))
	for i, p := range problems {
		fields[i] = apierr.FieldError{Field: p.Path, Message: fmt.Sprintf("%d:%d: %s", p.Line, p.Column, p.Message)}
	}
	msg := "the file has 1 problem"
	if len(problems) != 1 {
		msg = fmt.Sprintf("the file has %d problems", len(problems))
	}
	return c.JSON(http.StatusUnprocessableEntity, map[string]any{"error": map[string]any{
		"code": apierr.ValidationFailed, "type": "invalid_request_error", "message": msg + "; nothing was applied",
		"fields": fields, "problems": problems,
	}})
}

// configStoreError is a failed batch as the API's error: a reference to something
// that does not exist, or still in use, names the entity.
func configStoreError(err error) error {
	if ref, ok := errors.AsType[*store.ReferenceError](err); ok {
		return apierr.Wrap(apierr.ValidationFailed, err, "%s: refers to something that does not exist (%v)", ref.Field, err)
	}
	if use, ok := errors.AsType[*store.InUseError](err); ok {
		return apierr.Wrap(apierr.Conflict, err, "still referenced by %s: %v", strings.ReplaceAll(use.By, "_", " "), err)
	}
	if errors.Is(err, store.ErrInvalid) {
		return apierr.Wrap(apierr.ValidationFailed, err, "the database refused a value: %v", err)
	}
	return err
}

// diffFields are the top-level fields of two JSON objects that differ.
func diffFields(before, after map[string]any) []configField {
	var out []configField
	keys := slices.Sorted(maps.Keys(before))
	for k := range after {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !reflect.DeepEqual(before[k], after[k]) {
			out = append(out, configField{Field: k, Before: before[k], After: after[k]})
		}
	}
	return out
}

// exportConfig answers GET /config[?format=yaml|json]: every resource a
// gateway.yaml holds, in its own sections, so that applying the export changes
// nothing. It needs read access to all of them.
func (a *API) exportConfig(c echo.Context) error {
	format := c.QueryParam("format")
	if format == "" {
		format = "yaml"
	}
	if format != "yaml" && format != "json" {
		return apierr.New(apierr.InvalidRequest, "format must be yaml or json")
	}
	id := adminauth.IdentityOf(c)
	out := map[string]any{}
	for _, k := range a.configKinds() {
		read, _ := k.perms()
		if all, _, ok := id.Allows(read); !ok || !all {
			if k.optional() {
				continue
			}
			return forbidden(read, ", which exporting the whole configuration needs")
		}
		live, err := k.live(c.Request().Context())
		if err != nil {
			return err
		}
		if len(live) == 0 {
			continue
		}
		section := map[string]any{}
		for key, e := range live {
			body, err := k.shown(e)
			if err != nil {
				return err
			}
			delete(body, gatewayconfig.KeyFields[k.resource()])
			section[key] = body
		}
		out[k.section()] = section
	}
	// apiVersion first, then the sections in the file's order.
	var buf bytes.Buffer
	buf.WriteString(`{"apiVersion":` + strconv.Quote(gatewayconfig.APIVersion))
	for _, k := range a.configKinds() {
		if s, ok := out[k.section()]; ok {
			sb, err := json.Marshal(s)
			if err != nil {
				return err
			}
			buf.WriteString("," + strconv.Quote(k.section()) + ":")
			buf.Write(sb)
		}
	}
	buf.WriteString("}")
	c.Response().Header().Set("Cache-Control", "no-store")
	if format == "json" {
		return c.JSONBlob(http.StatusOK, buf.Bytes())
	}
	y, err := gatewayconfig.ToYAML(buf.Bytes())
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/yaml; charset=utf-8", y)
}
