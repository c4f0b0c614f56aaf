package adminapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// alertsPath lists the anomaly alerts; /alerts/{id}/ack acknowledges one.
const alertsPath = "/alerts"

// Page sizes of the alert list.
const (
	defaultAlerts = 100
	maxAlerts     = 1000
)

func (a *API) registerAlerts(g *echo.Group) {
	g.GET(alertsPath, a.listAlerts)
	g.POST(alertsPath+"/:id/ack", a.ackAlert)
}

// listAlerts answers GET /alerts[?acknowledged=false][&limit=N]: the newest alerts
// first.
func (a *API) listAlerts(c echo.Context) error {
	rep := &report{}
	limit := defaultAlerts
	if s := c.QueryParam("limit"); s != "" {
		n, err := strconv.Atoi(s)
		rep.check("limit", err == nil && n >= 1 && n <= maxAlerts, "must be an integer from 1 to 1000")
		limit = n
	}
	unacknowledged := false
	switch s := c.QueryParam("acknowledged"); s {
	case "", "any":
	case "false":
		unacknowledged = true
	default:
		rep.check("acknowledged", false, `must be "false" (only unacknowledged alerts) or left out`)
	}
	if err := rep.err(); err != nil {
		return err
	}
	out, err := a.st.Alerts(c.Request().Context(), unacknowledged, limit)
	if err != nil {
		return err
	}
	if out == nil {
		out = []store.Alert{}
	}
	return c.JSON(http.StatusOK, map[string]any{"data": out})
}

// ackAlert answers POST /alerts/{id}/ack: the alert, acknowledged (by the first
// acknowledgement, when it was already).
func (a *API) ackAlert(c echo.Context) error {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id < 1 {
		return apierr.New(apierr.NotFound, "alert not found")
	}
	ctx := c.Request().Context()
	al, err := a.st.AckAlert(ctx, id, adminauth.IdentityOf(c).Principal)
	if errors.Is(err, store.ErrNotFound) {
		return apierr.New(apierr.NotFound, "alert %d not found", id)
	}
	if err != nil {
		return err
	}
	err = a.st.RecordChange(ctx, store.Change{Action: "ack", Resource: "alerts", Key: strconv.FormatInt(id, 10),
		After: map[string]any{"acknowledged_at": al.AcknowledgedAt, "acknowledged_by": al.AcknowledgedBy}})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, al)
}
