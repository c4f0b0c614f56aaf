package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Paths of the limit override endpoints: the list of active overrides, and the one
// override of a client under /clients/{client_id}/.
const (
	overridesPath = "limit-overrides"
	overridePath  = "limit-override"
)

// maxOverrideTTL is how far ahead an override may expire: overrides are meant to be
// temporary, and a change meant to last belongs in the client's tier.
const maxOverrideTTL = 30 * 24 * time.Hour

// overrideLimits are the JSON fields of the limits an override may replace.
var overrideLimits = []string{"requests_per_minute", "tokens_per_hour", "max_concurrent_requests"}

// overrideRequest is the body of PUT /clients/{client_id}/limit-override. Pointers
// tell a field left out (or null) from one given.
type overrideRequest struct {
	ClientID              string     `json:"client_id"`
	RequestsPerMinute     *int64     `json:"requests_per_minute"`
	TokensPerHour         *int64     `json:"tokens_per_hour"`
	MaxConcurrentRequests *int64     `json:"max_concurrent_requests"`
	ExpiresAt             *time.Time `json:"expires_at"`
	TTLSeconds            *int64     `json:"ttl_seconds"`
	Reason                string     `json:"reason"`
}

// overrides serves the per-client limit overrides. Overrides that have expired are
// invisible: GET and DELETE answer 404 and the list leaves them out.
type overrides struct {
	res *resource[policy.LimitOverride]
	now func() time.Time
}

func (a *API) limitOverrides() *overrides {
	return &overrides{
		res: newResource(a, overridesPath, "limit override", a.st.LimitOverrides(), clientID,
			func() policy.LimitOverride { return policy.LimitOverride{} },
			func(*report, *policy.LimitOverride) {}),
		now: time.Now,
	}
}

// register adds the override routes to g.
func (o *overrides) register(g *echo.Group) {
	g.GET("/"+overridesPath, o.res.list)
	item := "/clients/:key/" + overridePath
	g.GET(item, o.res.get)
	g.PUT(item, o.put)
	g.DELETE(item, o.res.delete)
}

// unrouted answers a request for an override path with a method it does not take,
// reporting whether segments is such a path.
func (o *overrides) unrouted(c echo.Context, segments []string) (bool, error) {
	var allow string
	switch {
	case len(segments) == 1 && segments[0] == overridesPath:
		allow = "GET"
	case len(segments) == 3 && segments[0] == "clients" && segments[2] == overridePath:
		allow = "GET, PUT, DELETE"
	default:
		return false, nil
	}
	c.Response().Header().Set(echo.HeaderAllow, allow)
	return true, apierr.New(apierr.MethodNotAllowed, "%s is not allowed here; allowed: %s", c.Request().Method, allow)
}

// put creates or replaces the client's override. With If-Match it only replaces the
// override whose ETag matches (412 if it changed, 404 if there is none).
func (o *overrides) put(c echo.Context) error {
	key, revision, err := o.res.target(c, false)
	if err != nil {
		return err
	}
	obj, err := readObject(c, false)
	if err != nil {
		return err
	}
	e, err := o.decode(obj, key)
	if err != nil {
		return err
	}
	e.SetBy = adminauth.IdentityOf(c).Principal
	ctx := c.Request().Context()
	var rec store.Record[policy.LimitOverride]
	if revision != 0 {
		rec, err = o.res.coll.Update(ctx, key, revision, e)
	} else {
		rec, err = o.res.coll.Put(ctx, e)
	}
	if ref, ok := errors.AsType[*store.ReferenceError](err); ok && ref.Field == "client_id" {
		return apierr.Wrap(apierr.NotFound, err, "client not found")
	}
	if err != nil {
		return o.res.storeError(err, &e)
	}
	o.res.api.changed()
	return respond(c, http.StatusOK, rec)
}

// decode turns a PUT body into the override of client key, reporting every problem.
func (o *overrides) decode(obj map[string]json.RawMessage, key string) (policy.LimitOverride, error) {
	// set_by is the caller's identity, recorded by the server: like revision, a client
	// may send it back unchanged but never sets it.
	delete(obj, "set_by")
	given := func(field string) bool {
		raw, ok := obj[field]
		return ok && string(raw) != "null"
	}
	var req overrideRequest
	rep := &report{}
	decodeObject(rep, "", obj, reflect.ValueOf(&req).Elem(), reflect.ValueOf(overrideRequest{}))
	rep.check("client_id", req.ClientID == "" || req.ClientID == key, "does not match the URL")

	anyLimit := false
	for _, f := range overrideLimits {
		anyLimit = anyLimit || given(f)
	}
	rep.check("limits", anyLimit, "give at least one of "+strings.Join(overrideLimits, ", ")+
		"; a limit left out keeps the tier's value")
	positive := func(field string, v *int64) int64 {
		if v == nil {
			return 0
		}
		rep.check(field, *v > 0, "must be a positive integer")
		return *v
	}
	e := policy.LimitOverride{
		ClientID:              key,
		RequestsPerMinute:     positive("requests_per_minute", req.RequestsPerMinute),
		TokensPerHour:         positive("tokens_per_hour", req.TokensPerHour),
		MaxConcurrentRequests: positive("max_concurrent_requests", req.MaxConcurrentRequests),
		Reason:                req.Reason,
	}

	now := o.now()
	maxSeconds := int64(maxOverrideTTL / time.Second)
	switch {
	case given("expires_at") && given("ttl_seconds"):
		rep.check("ttl_seconds", false, "give either expires_at or ttl_seconds, not both")
	case !given("expires_at") && !given("ttl_seconds"):
		rep.check("expires_at", false, "is required (an RFC 3339 timestamp), or give ttl_seconds instead")
	case req.TTLSeconds != nil:
		ok := *req.TTLSeconds >= 1 && *req.TTLSeconds <= maxSeconds
		rep.check("ttl_seconds", ok, fmt.Sprintf("must be a whole number of seconds from 1 to %d (30 days)", maxSeconds))
		if ok {
			e.ExpiresAt = now.Add(time.Duration(*req.TTLSeconds) * time.Second).UTC()
		}
	case req.ExpiresAt != nil:
		e.ExpiresAt = req.ExpiresAt.UTC()
		rep.check("expires_at", e.ExpiresAt.After(now), "must be in the future")
		rep.check("expires_at", !e.ExpiresAt.After(now.Add(maxOverrideTTL)), "must be at most 30 days ahead")
	}

	rep.check("reason", strings.TrimSpace(req.Reason) != "", "is required: say why the limits are overridden")
	rep.check("reason", text(req.Reason, 500), "must be printable text of at most 500 characters")
	return e, rep.err()
}
