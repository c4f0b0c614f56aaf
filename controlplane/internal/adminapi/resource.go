package adminapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// Page sizes of list requests.
const (
	defaultLimit = 50
	maxLimit     = 500
)

// resource serves one entity type: a collection, its URL, its creation defaults and
// its validation.
type resource[T any] struct {
	api      *API
	path     string // URL segment, e.g. "residency-rules"
	noun     string // singular, for messages, e.g. "residency rule"
	coll     *store.Collection[T]
	key      rule              // what a key looks like
	defaults func() T          // a new entity with the creation defaults
	validate func(*report, *T) // records every problem of a decoded entity
	reserved []string          // keys taken by static routes under path, refused on create
	// toAPI, if set, turns a stored entity into the form the API shows and accepts
	// (a client's residency "" becomes "global"); fromAPI turns that form back into
	// the stored one. Bodies are decoded and validated in the API form.
	toAPI, fromAPI func(*T)
	// guard, if set, checks a write the route's permission alone does not settle
	// (which fields may change, for whom): before is nil on create; both are in the
	// stored form. It returns a 403 to refuse.
	guard func(c echo.Context, before, after *T) error
}

func newResource[T any](a *API, path, noun string, coll *store.Collection[T], key rule,
	defaults func() T, validate func(*report, *T)) *resource[T] {
	return &resource[T]{api: a, path: path, noun: noun, coll: coll, key: key, defaults: defaults, validate: validate}
}

// register adds r's routes to g and returns r's path.
func register[T any](g *echo.Group, r *resource[T]) string {
	g.GET("/"+r.path, r.list)
	g.POST("/"+r.path, r.create)
	g.GET("/"+r.path+"/:key", r.get)
	g.PUT("/"+r.path+"/:key", r.replace)
	g.PATCH("/"+r.path+"/:key", r.patch)
	g.DELETE("/"+r.path+"/:key", r.delete)
	return r.path
}

type listBody[T any] struct {
	Items      []item[T] `json:"items"`
	NextCursor *string   `json:"next_cursor"`
}

func (r *resource[T]) list(c echo.Context) error {
	limit := defaultLimit
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			e := apierr.New(apierr.InvalidRequest, "limit must be an integer from 1 to %d", maxLimit)
			e.Param = "limit"
			return e
		}
		limit = n
	}
	page, err := r.coll.List(c.Request().Context(), c.QueryParam("cursor"), limit)
	if err != nil {
		return r.storeError(err, nil)
	}
	body := listBody[T]{Items: make([]item[T], len(page.Items))}
	for i, rec := range page.Items {
		body.Items[i] = item[T](r.shown(rec))
	}
	if page.Next != "" {
		body.NextCursor = &page.Next
	}
	return c.JSON(http.StatusOK, body)
}

func (r *resource[T]) get(c echo.Context) error {
	key, err := r.urlKey(c)
	if err != nil {
		return err
	}
	rec, err := r.coll.Get(c.Request().Context(), key)
	if err != nil {
		return r.storeError(err, nil)
	}
	return respond(c, http.StatusOK, r.shown(rec))
}

func (r *resource[T]) create(c echo.Context) error {
	obj, err := readObject(c, false)
	if err != nil {
		return err
	}
	e := r.defaults()
	rep := &report{}
	r.decode(rep, obj, &e)
	if key := *r.coll.Key(&e); key != "" || !r.coll.GeneratesKey() {
		rep.check(r.coll.KeyName(), r.key.valid(key), r.key.message)
		rep.check(r.coll.KeyName(), !slices.Contains(r.reserved, key),
			fmt.Sprintf("%q is reserved: /%s/%s is another endpoint", key, r.path, key))
	}
	r.validate(rep, &e)
	if err := rep.err(); err != nil {
		return err
	}
	if r.fromAPI != nil {
		r.fromAPI(&e)
	}
	if r.guard != nil {
		if err := r.guard(c, nil, &e); err != nil {
			return err
		}
	}
	rec, err := r.coll.Create(c.Request().Context(), e)
	if err != nil {
		return r.storeError(err, &e)
	}
	r.api.changed()
	c.Response().Header().Set(echo.HeaderLocation, c.Request().URL.Path+"/"+url.PathEscape(*r.coll.Key(&rec.Entity)))
	return respond(c, http.StatusCreated, r.shown(rec))
}

// replace is PUT: the body is the whole entity; omitted fields take creation defaults.
func (r *resource[T]) replace(c echo.Context) error {
	key, revision, err := r.target(c, true)
	if err != nil {
		return err
	}
	obj, err := readObject(c, false)
	if err != nil {
		return err
	}
	return r.update(c, key, revision, r.defaults(), obj)
}

// patch is PATCH with a JSON merge patch of top-level fields: a field set to null
// returns to its creation default.
func (r *resource[T]) patch(c echo.Context) error {
	key, revision, err := r.target(c, true)
	if err != nil {
		return err
	}
	obj, err := readObject(c, true)
	if err != nil {
		return err
	}
	cur, err := r.coll.Get(c.Request().Context(), key)
	if err != nil {
		return r.storeError(err, nil)
	}
	if revision != 0 && revision != cur.Revision {
		return r.storeError(store.ErrStale, nil)
	}
	// The patch was computed against cur, so write only if cur is still current.
	return r.update(c, key, cur.Revision, r.shown(cur).Entity, obj)
}

// update applies obj to e (in the API form), validates the result and stores it as
// the entity with key.
func (r *resource[T]) update(c echo.Context, key string, revision int64, e T, obj map[string]json.RawMessage) error {
	rep := &report{}
	r.decode(rep, obj, &e)
	if k := r.coll.Key(&e); *k != "" && *k != key {
		rep.fail(r.coll.KeyName(), "does not match the URL; a key cannot be changed")
	}
	*r.coll.Key(&e) = key
	r.validate(rep, &e)
	if err := rep.err(); err != nil {
		return err
	}
	if r.fromAPI != nil {
		r.fromAPI(&e)
	}
	if r.guard != nil {
		cur, err := r.coll.Get(c.Request().Context(), key)
		if err != nil {
			return r.storeError(err, nil)
		}
		if revision != 0 && revision != cur.Revision {
			return r.storeError(store.ErrStale, nil)
		}
		if err := r.guard(c, &cur.Entity, &e); err != nil {
			return err
		}
		revision = cur.Revision // the guard judged this revision: write only over it
	}
	rec, err := r.coll.Update(c.Request().Context(), key, revision, e)
	if err != nil {
		return r.storeError(err, &e)
	}
	r.api.changed()
	return respond(c, http.StatusOK, r.shown(rec))
}

func (r *resource[T]) delete(c echo.Context) error {
	key, revision, err := r.target(c, false)
	if err != nil {
		return err
	}
	if err := r.coll.Delete(c.Request().Context(), key, revision); err != nil {
		return r.storeError(err, nil)
	}
	r.api.changed()
	return c.NoContent(http.StatusNoContent)
}

// target reads the item key from the URL and the revision from If-Match, which
// must be present when required.
func (r *resource[T]) target(c echo.Context, required bool) (key string, revision int64, err error) {
	if key, err = r.urlKey(c); err != nil {
		return "", 0, err
	}
	revision, err = r.precondition(c, key, required)
	return key, revision, err
}

// urlKey reads the key from the URL. A key no entity could have is simply not found.
func (r *resource[T]) urlKey(c echo.Context) (string, error) {
	key, err := url.PathUnescape(c.Param("key"))
	if err != nil || !r.key.valid(key) {
		return "", apierr.New(apierr.NotFound, "%s not found", r.noun)
	}
	return key, nil
}

// shown is rec with its entity in the API form.
func (r *resource[T]) shown(rec store.Record[T]) store.Record[T] {
	if r.toAPI != nil {
		r.toAPI(&rec.Entity)
	}
	return rec
}

// decode applies the fields of obj to e.
func (r *resource[T]) decode(rep *report, obj map[string]json.RawMessage, e *T) {
	decodeObject(rep, "", obj, reflect.ValueOf(e).Elem(), reflect.ValueOf(r.defaults()))
}

func respond[T any](c echo.Context, status int, rec store.Record[T]) error {
	c.Response().Header().Set("ETag", etag(rec.Revision))
	return c.JSON(status, item[T](rec))
}
