package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// alerts serves the alert list: open ones or all, by kind, newest first, with an
// acknowledge button for those who may.
func (c *Console) alerts(ec echo.Context) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.AlertsRead) {
		return c.forbidden(ec, adminauth.AlertsRead)
	}
	state, kind := ec.QueryParam("state"), ec.QueryParam("kind")
	if state != "all" {
		state = "open"
	}
	ctx := ec.Request().Context()
	f := store.AlertFilter{Open: state == "open", Kind: kind, Limit: pageSize + 1}
	if n, err := strconv.ParseInt(ec.QueryParam("before"), 10, 64); err == nil && n > 0 {
		f.BeforeID = n
	}
	items, err := c.st.FilterAlerts(ctx, f)
	if err != nil {
		return err
	}
	kinds, err := c.st.AlertKinds(ctx)
	if err != nil {
		return err
	}
	data := map[string]any{"State": state, "Kind": kind, "Kinds": kinds, "CanAck": v.id.Can(adminauth.AlertsAck), "At": time.Now().UTC(),
		"CanRules": v.id.Can(adminauth.AnomalyRulesRead), "Before": f.BeforeID}
	if len(items) > pageSize {
		items = items[:pageSize]
		data["Older"] = strconv.FormatInt(items[pageSize-1].ID, 10)
	}
	data["Items"] = items
	return c.render(ec, http.StatusOK, "alerts", page{Title: "Alerts", Data: data})
}

// ackAlert acknowledges an alert through the admin API.
func (c *Console) ackAlert(ec echo.Context) error {
	id, err := strconv.ParseInt(ec.Param("id"), 10, 64)
	if err != nil {
		return c.fail(ec, viewerOf(ec), http.StatusNotFound, "Not found", "There is no such alert.")
	}
	res, err := c.call(ec, http.MethodPost, fmt.Sprintf("/alerts/%d/ack", id), nil)
	if err != nil {
		return err
	}
	if res.status != http.StatusOK {
		_, msg := res.fieldErrors()
		return c.fail(ec, viewerOf(ec), res.status, "Not acknowledged", msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/alerts?done=alert-acked")
}

// keyRow is one deployment's key on the keys page.
type keyRow struct {
	Deployment, Provider, Region, KeySource, KeyPath string
	Vault                                            bool
	Version, PreviousVersion                         *int
	AgeSeconds                                       *int64
	NextRotationAt, OverlapUntil                     *time.Time
	LastFetches                                      []store.KeyAccess
}

// Age is the key version's age, rounded for reading.
func (k keyRow) Age() string {
	if k.AgeSeconds == nil {
		return "–"
	}
	d := time.Duration(*k.AgeSeconds) * time.Second
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d.Hours()/24))
	case d >= time.Hour:
		return fmt.Sprintf("%d h", int(d.Hours()))
	default:
		return d.Round(time.Second).String()
	}
}

// keys serves the keys page: every deployment's key source, the Vault keys' state
// from the admin API's key status, and the rotate and revoke forms for those who
// may.
func (c *Console) keys(ec echo.Context) error {
	return c.keysPage(ec, http.StatusOK, nil, nil, "")
}

func (c *Console) keysPage(ec echo.Context, status int, form, errs map[string]string, msg string) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.DeploymentsRead) {
		return c.forbidden(ec, adminauth.DeploymentsRead)
	}
	ctx := ec.Request().Context()
	deps, err := all(ctx, c.st.Deployments())
	if err != nil {
		return err
	}
	var rows []keyRow
	var providers []string
	for _, d := range deps {
		rows = append(rows, keyRow{Deployment: d.Name, Provider: d.Provider, Region: d.Region, KeySource: d.KeySource, KeyPath: d.KeyPath,
			Vault: d.KeySource == policy.KeySourceVault || d.KeySource == policy.KeySourceVaultDynamic})
		if !slices.Contains(providers, d.Provider) {
			providers = append(providers, d.Provider)
		}
	}
	slices.Sort(providers)
	data := map[string]any{"Items": rows, "Providers": providers,
		"CanRotate": v.id.Can(adminauth.SecretsRotate), "CanRevoke": v.id.Can(adminauth.SecretsRevoke)}
	if v.id.Can(adminauth.SecretsRead) {
		res, err := c.call(ec, http.MethodGet, "/secrets/status", nil)
		if err != nil {
			return err
		}
		var st struct {
			Data []struct {
				Deployment      string            `json:"deployment"`
				Version         *int              `json:"version"`
				AgeSeconds      *int64            `json:"age_seconds"`
				NextRotationAt  *time.Time        `json:"next_rotation_at"`
				PreviousVersion *int              `json:"previous_version"`
				OverlapUntil    *time.Time        `json:"overlap_until"`
				LastFetches     []store.KeyAccess `json:"last_fetches"`
			} `json:"data"`
		}
		if res.status != http.StatusOK || json.Unmarshal(res.body, &st) != nil {
			_, m := res.fieldErrors()
			data["StatusError"] = m
		}
		for _, s := range st.Data {
			for i := range rows {
				if rows[i].Deployment == s.Deployment {
					r := &rows[i]
					r.Version, r.AgeSeconds, r.NextRotationAt, r.PreviousVersion, r.OverlapUntil, r.LastFetches =
						s.Version, s.AgeSeconds, s.NextRotationAt, s.PreviousVersion, s.OverlapUntil, s.LastFetches
				}
			}
		}
	}
	if err := c.keyLogs(ec, rows, data); err != nil {
		return err
	}
	return c.render(ec, status, "keys", page{Title: "Keys", Data: data, Form: form, Errors: errs, Error: msg})
}

// rotateKeys rotates a provider's (or one deployment's) Vault keys through the
// admin API, once the form confirms it with a reason.
func (c *Console) rotateKeys(ec echo.Context) error {
	form := formValues(ec, "provider", "deployment", "reason", "confirm")
	errs := map[string]string{}
	if form["reason"] == "" {
		errs["reason"] = "say why: it goes into the rotation history"
	}
	if form["confirm"] != "rotate" {
		errs["confirm"] = "tick the box to confirm the rotation"
	}
	if len(errs) > 0 {
		return c.keysPage(ec, http.StatusUnprocessableEntity, form, errs, "Not rotated: confirm it and give a reason.")
	}
	body := map[string]any{"provider": form["provider"], "reason": form["reason"]}
	if form["deployment"] != "" {
		body["deployment"] = form["deployment"]
	}
	res, err := c.call(ec, http.MethodPost, "/secrets/rotate", body)
	if err != nil {
		return err
	}
	if res.status != http.StatusOK {
		fields, msg := res.fieldErrors()
		return c.keysPage(ec, res.status, form, fields, "Not rotated: "+msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/keys?done=rotated")
}

// revokeKeys revokes every key of a provider through the admin API, once the form
// confirms it with a reason.
func (c *Console) revokeKeys(ec echo.Context) error {
	form := formValues(ec, "provider", "reason", "confirm")
	form["revoke_reason"] = form["reason"]
	errs := map[string]string{}
	if form["reason"] == "" {
		errs["revoke_reason"] = "say why: it goes into the revocation history and the alert"
	}
	if form["confirm"] != "revoke" {
		errs["revoke_confirm"] = "tick the box to confirm the revocation"
	}
	if len(errs) > 0 {
		return c.keysPage(ec, http.StatusUnprocessableEntity, form, errs, "Not revoked: confirm it and give a reason.")
	}
	res, err := c.call(ec, http.MethodPost, "/secrets/revoke", map[string]any{"provider": form["provider"], "reason": form["reason"]})
	if err != nil {
		return err
	}
	if res.status != http.StatusOK {
		_, msg := res.fieldErrors()
		return c.keysPage(ec, res.status, form, nil, "Not revoked: "+msg)
	}
	return ec.Redirect(http.StatusSeeOther, Prefix+"/keys?done=revoked")
}

// keyLogRows is how many rotations and fetches the keys page lists.
const keyLogRows = 50

// keyLogs adds the rotation history (secrets:read) and the access log of key
// fetches from Vault (secrets:access) to the keys page's data, for every deployment
// or the one ?deployment= names.
func (c *Console) keyLogs(ec echo.Context, rows []keyRow, data map[string]any) error {
	v, ctx := viewerOf(ec), ec.Request().Context()
	dep := ec.QueryParam("deployment")
	if !slices.ContainsFunc(rows, func(r keyRow) bool { return r.Deployment == dep }) {
		dep = ""
	}
	data["Deployment"] = dep
	if v.id.Can(adminauth.SecretsRead) {
		h, err := c.st.Rotations(ctx, dep, keyLogRows)
		if err != nil {
			return err
		}
		data["History"], data["ShowHistory"] = h, true
	}
	if v.id.Can(adminauth.SecretsAccess) {
		a, err := c.st.KeyAccessLog(ctx, dep, keyLogRows)
		if err != nil {
			return err
		}
		data["Access"], data["ShowAccess"] = a, true
	}
	return nil
}
