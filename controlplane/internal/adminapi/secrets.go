package adminapi

import (
	"context"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/rotator"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Secrets rotates and revokes deployment keys (the control plane's key rotator).
type Secrets interface {
	Rotate(ctx context.Context, req rotator.Request) ([]store.Rotation, error)
	Revoke(ctx context.Context, req rotator.Request) ([]store.Rotation, error)
}

var _ Secrets = (*rotator.Rotator)(nil)

// WithSecrets serves the /secrets endpoints with s.
func (a *API) WithSecrets(s Secrets) *API { a.secrets = s; return a }

// secretsPaths are the key custody endpoints, under /secrets/.
var secretsPaths = map[string]string{"rotate": "POST", "revoke": "POST", "status": "GET", "history": "GET", "access": "GET"}

func (a *API) registerSecrets(g *echo.Group) {
	g.POST("/secrets/rotate", a.rotateKeys)
	g.POST("/secrets/revoke", a.revokeKeys)
	g.GET("/secrets/status", a.secretsStatus)
	g.GET("/secrets/history", a.secretsHistory)
	g.GET("/secrets/access", a.secretsAccess)
}

// secretsRequest is the body of POST /secrets/rotate and /secrets/revoke.
type secretsRequest struct {
	Provider   string `json:"provider"`
	Deployment string `json:"deployment"`
	Reason     string `json:"reason"`
}

func (a *API) decodeSecrets(c echo.Context, revoke bool) (rotator.Request, error) {
	obj, err := readObject(c, false)
	if err != nil {
		return rotator.Request{}, err
	}
	var req secretsRequest
	rep := &report{}
	decodeObject(rep, "", obj, reflect.ValueOf(&req).Elem(), reflect.ValueOf(secretsRequest{}))
	rep.check("provider", slug.valid(req.Provider), "names the provider and "+slug.message)
	rep.check("deployment", req.Deployment == "" || slug.valid(req.Deployment), "names a deployment of the provider, or is empty for all of them")
	if revoke {
		rep.check("deployment", req.Deployment == "", "a revocation covers every deployment of the provider")
		rep.check("reason", strings.TrimSpace(req.Reason) != "", "is required: say why the keys are revoked")
	}
	rep.check("reason", text(req.Reason, 500), "must be printable text of at most 500 characters")
	if err := rep.err(); err != nil {
		return rotator.Request{}, err
	}
	return rotator.Request{Provider: req.Provider, Deployment: req.Deployment, Reason: req.Reason,
		Actor: adminauth.IdentityOf(c).Principal}, nil
}

// rotateKeys answers POST /secrets/rotate: the provider's keys (or one deployment's)
// rotate now, each with its overlap.
func (a *API) rotateKeys(c echo.Context) error {
	if a.secrets == nil {
		return apierr.New(apierr.VaultUnavailable, "key rotation is not available on this control plane")
	}
	req, err := a.decodeSecrets(c, false)
	if err != nil {
		return err
	}
	rots, err := a.secrets.Rotate(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return a.recordSecrets(c, "rotate", req, rots)
}

// revokeKeys answers POST /secrets/revoke: every key of the provider is revoked now,
// with no overlap.
func (a *API) revokeKeys(c echo.Context) error {
	if a.secrets == nil {
		return apierr.New(apierr.VaultUnavailable, "key revocation is not available on this control plane")
	}
	req, err := a.decodeSecrets(c, true)
	if err != nil {
		return err
	}
	rots, err := a.secrets.Revoke(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return a.recordSecrets(c, "revoke", req, rots)
}

// keyStatus is one Vault-keyed deployment's key state.
type keyStatus struct {
	Deployment           string            `json:"deployment"`
	Provider             string            `json:"provider"`
	KeySource            string            `json:"key_source"`
	KeyPath              string            `json:"key_path"`
	Minter               string            `json:"minter"`
	RotationIntervalDays int               `json:"rotation_interval_days"`
	RotationOverlapHours float64           `json:"rotation_overlap_hours"`
	Version              *int              `json:"version"`
	RotatedAt            *time.Time        `json:"rotated_at"`
	AgeSeconds           *int64            `json:"age_seconds"`
	NextRotationAt       *time.Time        `json:"next_rotation_at"`
	PreviousVersion      *int              `json:"previous_version"`
	OverlapUntil         *time.Time        `json:"overlap_until"`
	LastFetches          []store.KeyAccess `json:"last_fetches"`
}

// secretsStatus answers GET /secrets/status: per Vault-keyed deployment, the version
// in use, its age, the next scheduled rotation, any overlap in progress, and the
// last key fetch of each worker and control plane.
func (a *API) secretsStatus(c echo.Context) error {
	ctx := c.Request().Context()
	s, err := a.st.Snapshot(ctx)
	if err != nil {
		return err
	}
	fetches, err := a.st.LastKeyAccess(ctx)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	out := []keyStatus{}
	for _, d := range s.Deployments {
		if d.KeySource != policy.KeySourceVault && d.KeySource != policy.KeySourceVaultDynamic {
			continue
		}
		ks := keyStatus{Deployment: d.Name, Provider: d.Provider, KeySource: d.KeySource, KeyPath: d.KeyPath, Minter: d.Minter,
			RotationIntervalDays: d.RotationIntervalDays, RotationOverlapHours: d.RotationOverlapHours, LastFetches: []store.KeyAccess{}}
		last, ok, err := a.st.LastRotation(ctx, d.Name)
		if err != nil {
			return err
		}
		if ok {
			ks.Version, ks.RotatedAt = last.NewVersion, &last.CreatedAt
			age := int64(now.Sub(last.CreatedAt) / time.Second)
			ks.AgeSeconds = &age
			if d.RotationIntervalDays > 0 {
				next := last.CreatedAt.Add(time.Duration(d.RotationIntervalDays) * 24 * time.Hour)
				ks.NextRotationAt = &next
			}
			if last.RetiredAt == nil && last.OverlapUntil != nil && now.Before(*last.OverlapUntil) {
				ks.PreviousVersion, ks.OverlapUntil = last.OldVersion, last.OverlapUntil
			}
		}
		for _, f := range fetches {
			if f.Deployment == d.Name {
				ks.LastFetches = append(ks.LastFetches, f)
			}
		}
		out = append(out, ks)
	}
	return c.JSON(http.StatusOK, map[string]any{"data": out})
}

// listQuery reads the deployment and limit query parameters of a log listing.
func listQuery(c echo.Context) (string, int, error) {
	limit := defaultLimit
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			e := apierr.New(apierr.InvalidRequest, "limit must be an integer from 1 to %d", maxLimit)
			e.Param = "limit"
			return "", 0, e
		}
		limit = n
	}
	return c.QueryParam("deployment"), limit, nil
}

// secretsHistory answers GET /secrets/history[?deployment=&limit=]: rotations and
// revocations, newest first.
func (a *API) secretsHistory(c echo.Context) error {
	dep, limit, err := listQuery(c)
	if err != nil {
		return err
	}
	rots, err := a.st.Rotations(c.Request().Context(), dep, limit)
	if err != nil {
		return err
	}
	if rots == nil {
		rots = []store.Rotation{}
	}
	return c.JSON(http.StatusOK, map[string]any{"data": rots})
}

// secretsAccess answers GET /secrets/access[?deployment=&limit=]: key fetches from
// Vault by workers and control planes, newest first.
func (a *API) secretsAccess(c echo.Context) error {
	dep, limit, err := listQuery(c)
	if err != nil {
		return err
	}
	log, err := a.st.KeyAccessLog(c.Request().Context(), dep, limit)
	if err != nil {
		return err
	}
	if log == nil {
		log = []store.KeyAccess{}
	}
	return c.JSON(http.StatusOK, map[string]any{"data": log})
}

// recordSecrets records a rotation or revocation in the change history (versions and
// the reason, never key material) and answers it.
func (a *API) recordSecrets(c echo.Context, action string, req rotator.Request, rots []store.Rotation) error {
	key := req.Provider
	if req.Deployment != "" {
		key += "/" + req.Deployment
	}
	if err := a.st.RecordChange(c.Request().Context(), store.Change{Action: action, Resource: "secrets", Key: key,
		After: map[string]any{"reason": req.Reason, "rotations": rots}}); err != nil {
		// The keys have changed already; the rotator's own history holds the change.
		a.log.Error("record key change in the change history", "action", action, "key", key, "err", err)
	}
	return c.JSON(http.StatusOK, map[string]any{"data": rots})
}
