package adminapi

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// deploymentKeyFields lists the deployment fields only deployments:keys may change:
// where requests go, how that endpoint is trusted, and the key sent with them.
func deploymentKeyFields(a, b *policy.Deployment) []string {
	var changed []string
	diff := func(name string, differs bool) {
		if differs {
			changed = append(changed, name)
		}
	}
	diff("base_url", a.BaseURL != b.BaseURL)
	diff("tls", !tlsEqual(a.TLS, b.TLS))
	diff("key_source", a.KeySource != b.KeySource)
	diff("key_path", a.KeyPath != b.KeyPath)
	diff("rotation_interval_days", a.RotationIntervalDays != b.RotationIntervalDays)
	diff("rotation_overlap_hours", a.RotationOverlapHours != b.RotationOverlapHours)
	diff("minter", a.Minter != b.Minter)
	diff("admin_key_path", a.AdminKeyPath != b.AdminKeyPath)
	diff("admin_project_id", a.AdminProjectID != b.AdminProjectID)
	return changed
}

func tlsEqual(a, b policy.TLS) bool {
	return a.Verify == b.Verify && a.CAFile == b.CAFile && a.MinVersion == b.MinVersion &&
		strings.Join(a.PinSHA256, ",") == strings.Join(b.PinSHA256, ",")
}

// deploymentGuard refuses an update of a deployment's key fields (see
// deploymentKeyFields) by a caller without deployments:keys. Creating a deployment
// needs deployments:keys by its route.
func deploymentGuard(c echo.Context, before, after *policy.Deployment) error {
	if before == nil || adminauth.IdentityOf(c).Can(adminauth.DeploymentsKeys) {
		return nil
	}
	if changed := deploymentKeyFields(before, after); len(changed) > 0 {
		return forbidden(adminauth.DeploymentsKeys, "; it changes "+strings.Join(changed, ", "))
	}
	return nil
}

// clientPlacementGuard lets a caller without clients:placement (a tenant admin)
// neither change a client's tenant, tier, residency or guardrails nor give a new
// client guardrails of its own, or a tier and residency that none of its tenant's
// clients has: the operator places a
// tenant, the tenant admin adds clients within that placement. A tenant outside the
// caller's scope is refused first, as if it did not exist, before anything else
// (the database's own checks) could tell which tiers, residencies or tenants exist.
func (a *API) clientPlacementGuard(c echo.Context, before, after *policy.Client) error {
	if adminauth.IdentityOf(c).Can(adminauth.ClientsPlacement) {
		return nil
	}
	ctx := c.Request().Context()
	if tenants, scoped := store.TenantsOf(ctx); scoped && !slices.Contains(tenants, after.Tenant) {
		msg := fmt.Sprintf("no tenant named %q exists", after.Tenant)
		e := apierr.New(apierr.ValidationFailed, "tenant: %s", msg)
		e.Fields = []apierr.FieldError{{Field: "tenant", Message: msg}}
		return e
	}
	if before != nil {
		if before.Tenant != after.Tenant || before.Tier != after.Tier || before.Residency != after.Residency ||
			!sameGuardrails(before.Guardrails, after.Guardrails) {
			return forbidden(adminauth.ClientsPlacement, "; it changes the client's tenant, tier, residency or guardrails")
		}
		return nil
	}
	if after.Guardrails != nil {
		return forbidden(adminauth.ClientsPlacement, "; it sets the client's guardrails")
	}
	used, err := a.st.ClientPlacementUsed(ctx, after.Tenant, after.Tier, after.Residency)
	if err != nil {
		return err
	}
	if !used {
		return forbidden(adminauth.ClientsPlacement,
			"; a new client must take the tier and residency of one of its tenant's clients")
	}
	return nil
}

// sameGuardrails reports whether a and b are the same policy (nil and empty alike).
func sameGuardrails(a, b *policy.Guardrails) bool {
	if a == nil || a.IsZero() {
		return b == nil || b.IsZero()
	}
	if b == nil {
		return false
	}
	ja, _ := json.Marshal(a) // plain structs always marshal
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
