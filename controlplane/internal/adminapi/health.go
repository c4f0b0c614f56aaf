package adminapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/health"
)

// healthPath is the deployment health endpoint under /deployments. It is a static
// route, which echo prefers to /deployments/:key, so no deployment may be named so.
const healthPath = "health"

// HealthView is the fleet's deployment health as the data-plane workers last reported
// it; *health.Collector implements it.
type HealthView interface {
	Current() health.Fleet
}

var _ HealthView = (*health.Collector)(nil)

// healthBody is the answer of GET /deployments/health.
type healthBody struct {
	Data    []health.DeploymentHealth `json:"data"`
	Workers int                       `json:"workers"`
}

// deploymentHealth answers GET /deployments/health: every deployment some worker with
// a fresh report knows, with its summary state and each worker's view.
func (a *API) deploymentHealth(c echo.Context) error {
	f := a.health.Current()
	data := f.Deployments
	if data == nil {
		data = []health.DeploymentHealth{}
	}
	return c.JSON(http.StatusOK, healthBody{Data: data, Workers: f.Workers})
}
