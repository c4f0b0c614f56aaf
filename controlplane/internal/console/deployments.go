package console

import (
	"cmp"
	"context"
	"html/template"
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/health"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// residencyRow is one residency of the matrix: the clients that have it and, per
// deployment in the page's order, whether they may be served there.
type residencyRow struct {
	Residency string
	Regions   []string // nil for global: any region
	Clients   int
	Allowed   []bool
}

// deployments serves providers, deployments (endpoint, TLS, timeouts, retries and
// breaker settings), models, fallback maps and the residency matrix, with the live
// breaker state of each deployment across the workers, which htmx refreshes.
func (c *Console) deployments(ec echo.Context) error {
	v, ctx := viewerOf(ec), ec.Request().Context()
	if !v.id.Can(adminauth.DeploymentsRead) {
		return c.forbidden(ec, adminauth.DeploymentsRead)
	}
	deps, err := all(ctx, c.st.Deployments())
	if err != nil {
		return err
	}
	slices.SortFunc(deps, func(a, b policy.Deployment) int {
		return cmp.Or(cmp.Compare(a.Region, b.Region), cmp.Compare(a.Name, b.Name))
	})
	data := map[string]any{"Deployments": deps}
	if v.id.Can(adminauth.ProvidersRead) {
		if data["Providers"], err = all(ctx, c.st.Providers()); err != nil {
			return err
		}
	}
	if v.id.Can(adminauth.ModelsRead) {
		if data["Models"], err = all(ctx, c.st.Models()); err != nil {
			return err
		}
	}
	if v.id.Can(adminauth.FallbacksRead) {
		if data["Fallbacks"], err = all(ctx, c.st.FallbackMaps()); err != nil {
			return err
		}
	}
	if v.id.Can(adminauth.ResidencyRead) {
		rules, err := all(ctx, c.st.ResidencyRules())
		if err != nil {
			return err
		}
		rows := []residencyRow{{Residency: policy.ResidencyGlobal}}
		for _, r := range rules {
			rows = append(rows, residencyRow{Residency: r.Residency, Regions: r.AllowedRegions})
		}
		counts := v.id.Can(adminauth.ClientsRead)
		total := 0
		if counts {
			if total, err = c.st.Clients().Count(ctx, store.Filter{}); err != nil {
				return err
			}
		}
		for i := range rows {
			r := &rows[i]
			for _, d := range deps {
				r.Allowed = append(r.Allowed, r.Regions == nil || slices.Contains(r.Regions, d.Region))
			}
			if counts && i > 0 {
				if r.Clients, err = c.st.Clients().Count(ctx, store.Filter{Equals: map[string]string{"residency": r.Residency}}); err != nil {
					return err
				}
				total -= r.Clients
			}
		}
		if counts {
			rows[0].Clients = total // global is stored as no residency at all
		}
		data["Residency"], data["CountClients"] = rows, counts
	}
	if v.id.Can(adminauth.HealthRead) {
		data["Live"] = c.breakers(ec, true)
	}
	controls := map[string]template.HTML{}
	for section := range controlSections {
		if controls[section], err = c.sectionControls(ec, section); err != nil {
			return err
		}
	}
	data["Controls"] = controls
	return c.render(ec, http.StatusOK, "deployments", page{Title: "Deployments", Data: data})
}

// all reads every record of a collection (the policy's collections are small: the
// snapshot holds them all).
func all[T any](ctx context.Context, coll *store.Collection[T]) ([]T, error) {
	var out []T
	for cursor := ""; ; {
		pg, err := coll.List(ctx, cursor, 500)
		if err != nil {
			return nil, err
		}
		out = append(out, entities(pg.Items)...)
		if cursor = pg.Next; cursor == "" {
			return out, nil
		}
	}
}

// breakersData is the live breaker table shared by the overview and the
// deployments page.
type breakersData struct {
	Show     bool
	Poll     bool   // the table refreshes itself (on the overview, its section does)
	Error    string // why the fleet's health is not shown
	Workers  int
	Breakers []health.DeploymentHealth
}

// liveBreakers serves the breaker table alone, for htmx to swap in.
func (c *Console) liveBreakers(ec echo.Context) error {
	if !viewerOf(ec).id.Can(adminauth.HealthRead) {
		return c.forbidden(ec, adminauth.HealthRead)
	}
	return c.fragment(ec, "deployments", "breakers", c.breakers(ec, true))
}

// breakers is the breaker table's data, polling itself or not; a failure to read
// the fleet's health is logged and said in the table, not made the page's failure.
func (c *Console) breakers(ec echo.Context, poll bool) breakersData {
	fleet, err := c.fleet(ec)
	if err != nil {
		c.log.Error("console: read the deployments' health", "err", err)
		return breakersData{Show: true, Poll: poll, Error: "The deployments' health cannot be read now; the control plane's log says why."}
	}
	b := newBreakers(fleet)
	b.Poll = poll
	return b
}

// newBreakers is the fleet's breakers, trouble first: open, unusable, half-open,
// then the closed ones, each by name.
func newBreakers(fleet health.Fleet) breakersData {
	rank := map[string]int{health.StateOpen: 0, health.StateUnusable: 1, health.StateHalfOpen: 2}
	order := func(state string) int {
		if r, ok := rank[state]; ok {
			return r
		}
		return len(rank)
	}
	slices.SortStableFunc(fleet.Deployments, func(a, b health.DeploymentHealth) int {
		return cmp.Compare(order(a.State), order(b.State))
	})
	return breakersData{Show: true, Workers: fleet.Workers, Breakers: fleet.Deployments}
}
