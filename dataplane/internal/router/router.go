// Package router picks the deployments a request may go to, in order of preference.
// Residency is applied before anything else: a deployment in a region the client's
// residency does not allow is never a candidate (docs/design.md §9). Breakers and
// self-hosted fallback (the resilience issue) filter and extend this same list.
package router

import (
	"fmt"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// Candidates returns the enabled deployments serving model that client's residency
// allows, the worker's own region first (the policy's route order). The caller tries
// them in order. Errors are *apierr.Error: 404 model_not_found when no deployment
// serves the model, 503 upstream_unavailable when every one is disabled, and 503
// no_compliant_upstream when residency leaves none.
func Candidates(p *policycache.Policy, client *policycache.Client, model string) ([]policycache.Route, error) {
	m, ok := p.Model(model)
	if !ok || len(m.Routes) == 0 {
		return nil, apierr.New(apierr.ModelNotFound, "the model %q does not exist", model)
	}
	out := make([]policycache.Route, 0, len(m.Routes))
	enabled := 0
	for _, r := range m.Routes {
		if !r.Deployment.Enabled {
			continue
		}
		enabled++
		if client.RegionAllowed(r.Deployment.Region) {
			out = append(out, r)
		}
	}
	switch {
	case enabled == 0:
		return nil, apierr.Wrap(apierr.UpstreamUnavailable,
			fmt.Errorf("every deployment of model %s is disabled", model),
			"no upstream is currently available for this model")
	case len(out) == 0:
		return nil, apierr.Wrap(apierr.NoCompliantUpstream,
			fmt.Errorf("client %s residency %q allows none of the regions serving model %s", client.ID, client.Residency, model),
			"no upstream allowed by this client's data residency serves this model")
	}
	return out, nil
}
