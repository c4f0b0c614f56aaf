package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/router"
)

// modelList is OpenAI's list schema for GET /v1/models.
type modelList struct {
	Object string        `json:"object"`
	Data   []modelObject `json:"data"`
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// listModels lists the models the calling client may use: allowed by its tier and
// served by at least one enabled deployment its residency allows.
func (s *server) listModels(c echo.Context) error {
	p := s.Policy.Current()
	if p == nil {
		return errPolicyNotReady
	}
	client, err := s.authenticate(c, p)
	if err != nil {
		return err
	}
	list := modelList{Object: "list", Data: []modelObject{}}
	for _, name := range client.Tier.Models {
		routes, err := router.Candidates(p, client, name)
		if err != nil {
			continue
		}
		list.Data = append(list.Data, modelObject{ID: name, Object: "model", OwnedBy: routes[0].Deployment.Provider})
	}
	return c.JSON(http.StatusOK, list)
}
