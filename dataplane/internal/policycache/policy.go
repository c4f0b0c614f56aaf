package policycache

import (
	"cmp"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/guardrails"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Policy is one snapshot compiled into lookup tables for the request path. It is
// immutable once built and safe for concurrent use.
type Policy struct {
	// Version is the snapshot's policy version.
	Version int64
	// GeneratedAt is when the control plane generated the snapshot.
	GeneratedAt time.Time

	clients     map[string]*Client
	models      map[string]*Model
	deployments map[string]*Deployment
	revoked     map[string]struct{}
	fallbacks   map[fallbackKey]string

	// Auth is what client tokens must carry, from the policy's gateway settings;
	// its empty fields leave the data plane's own settings.
	Auth policy.AuthSettings
	// AuditHeaders is the audit header allowlist from the gateway settings; nil
	// leaves the data plane's own.
	AuditHeaders []string
	// triggers are the gateway settings' fallback triggers, by provider.
	triggers map[string]policy.FallbackTrigger
	// proxies are the region's proxies from the gateway settings that the upstream
	// targets were built with ("" for the worker's own): a change rebuilds them.
	proxies string
}

// FallbackTrigger is when provider's requests fall back, if the policy says.
func (p *Policy) FallbackTrigger(provider string) (policy.FallbackTrigger, bool) {
	t, ok := p.triggers[provider]
	return t, ok
}

type fallbackKey struct{ provider, model string }

// Fallback returns the self-hosted model a model served by provider falls back to
// when its deployments fail, from the policy's fallback maps.
func (p *Policy) Fallback(provider, model string) (string, bool) {
	to, ok := p.fallbacks[fallbackKey{provider, model}]
	return to, ok
}

// Client is a calling application, resolved with its tier and residency.
type Client struct {
	ID        string
	Tenant    string
	Enabled   bool
	Tier      *Tier
	Residency string // "" means no residency restriction
	// Endpoint is the data-plane URL clients of the residency should call (its
	// rule's endpoint_url), "" if none is set.
	Endpoint string
	// allowedRegions is nil when the client may be served from any region;
	// otherwise the regions its residency rule allows (empty if the rule is missing).
	allowedRegions map[string]struct{}
	// override replaces some of the tier's limits until it expires; nil if none.
	override *policy.LimitOverride
	// Guardrails is the client's guardrail policy, its tier's with its tenant's and
	// its own overrides on top, compiled; nil when every family is off.
	Guardrails *guardrails.Policy
}

// Limits are a client's effective limits at one moment; zero means unlimited.
type Limits struct {
	RequestsPerMinute     int64
	TokensPerHour         int64
	MaxConcurrentRequests int64
	// Overridden reports that a limit override is in force.
	Overridden bool
}

// Limits returns the client's limits at now: its tier's, with any override that
// has not expired by now applied on top. An override lifts itself at its expiry,
// without waiting for a new snapshot.
func (c *Client) Limits(now time.Time) Limits {
	l := c.Tier.Limits
	if o := c.override; o != nil && now.Before(o.ExpiresAt) {
		l.Overridden = true
		if o.RequestsPerMinute > 0 {
			l.RequestsPerMinute = o.RequestsPerMinute
		}
		if o.TokensPerHour > 0 {
			l.TokensPerHour = o.TokensPerHour
		}
		if o.MaxConcurrentRequests > 0 {
			l.MaxConcurrentRequests = o.MaxConcurrentRequests
		}
	}
	return l
}

// RegionAllowed reports whether the client's residency allows a deployment in region.
func (c *Client) RegionAllowed(region string) bool {
	if c.allowedRegions == nil {
		return true
	}
	_, ok := c.allowedRegions[region]
	return ok
}

// Tier is a tier's allowlists as sets.
type Tier struct {
	Name       string
	models     map[string]struct{}
	operations map[string]struct{}
	// Models lists the allowed model names, sorted.
	Models []string
	// Limits are the tier's limits.
	Limits Limits
	// DefaultMaxTokens is the max_tokens a request without one is given; 0 means
	// the gateway's default.
	DefaultMaxTokens int64
	// MaxChoices caps n (best_of) and MaxOutputTokens caps max_tokens; 0 means no
	// cap of the tier's (the gateway's own bound on n still applies).
	MaxChoices, MaxOutputTokens int64
}

// AllowsModel reports whether the tier allows the public model name.
func (t *Tier) AllowsModel(name string) bool { _, ok := t.models[name]; return ok }

// AllowsOperation reports whether the tier allows the request operation op
// (policy.OpChat, OpTextCompletion, OpMessages or OpEmbeddings); a tier that lists
// policy.OpCompletion allows every text-generation operation.
func (t *Tier) AllowsOperation(op string) bool { _, ok := t.operations[op]; return ok }

// Model is a public model name and every deployment serving it.
type Model struct {
	Name string
	// Routes are ordered: deployments in the worker's own region first, then the
	// rest, each group by deployment name.
	Routes []Route
}

// Route is one deployment serving a model, with the model's name upstream.
type Route struct {
	Deployment    *Deployment
	UpstreamModel string
	// Weight is the route's share of the model's traffic within its group; 0 makes
	// it a standby (see router.Balance).
	Weight int
	// Home is whether the deployment is in the worker's own region: the preferred
	// group, listed first.
	Home bool
	// InputUSDPer1M and OutputUSDPer1M price the route's tokens, for showback.
	InputUSDPer1M, OutputUSDPer1M float64
}

// Deployment is a deployment with its provider resolved and its upstream built.
type Deployment struct {
	Name         string
	Region       string
	Kind         string
	Provider     string
	ProviderKind string
	Enabled      bool
	// Target calls the upstream. It is nil when the deployment's settings could not
	// be built into one; BuildErr says why.
	Target   *upstream.Target
	BuildErr error

	spec policy.Deployment
}

// Client returns the client with the given client_id.
func (p *Policy) Client(id string) (*Client, bool) { c, ok := p.clients[id]; return c, ok }

// Deployments returns every deployment, sorted by name.
func (p *Policy) Deployments() []*Deployment {
	out := make([]*Deployment, 0, len(p.deployments))
	for _, d := range p.deployments {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b *Deployment) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Model returns the model with the given public name.
func (p *Policy) Model(name string) (*Model, bool) { m, ok := p.models[name]; return m, ok }

// Revoked reports whether the token id jti has been revoked.
func (p *Policy) Revoked(jti string) bool { _, ok := p.revoked[jti]; return ok }

// Compile builds the lookup tables of s for a worker in region, with fresh upstream
// targets. The Cache compiles every snapshot the same way, reusing unchanged targets.
func Compile(s *policy.Snapshot, region string, log *slog.Logger) *Policy {
	p, _ := compile(s, region, nil, log, upstream.Options{Log: log})
	return p
}

// compile builds the lookup tables of s for a worker in region. Upstream targets of
// prev whose deployment settings are unchanged are reused, so connection pools
// survive unrelated policy changes; the targets no longer used are returned so the
// caller can close their idle connections once the new policy is in place.
func compile(s *policy.Snapshot, region string, prev *Policy, log *slog.Logger, uo upstream.Options) (*Policy, []*upstream.Target) {
	p := &Policy{
		Version:      s.Version,
		GeneratedAt:  s.GeneratedAt,
		Auth:         settingsOf(s).Auth,
		AuditHeaders: settingsOf(s).AuditHeaders,
		triggers:     map[string]policy.FallbackTrigger{},
		clients:      make(map[string]*Client, len(s.Clients)),
		models:       make(map[string]*Model, len(s.Models)),
		deployments:  make(map[string]*Deployment, len(s.Deployments)),
		revoked:      make(map[string]struct{}, len(s.RevokedTokens)),
		fallbacks:    make(map[fallbackKey]string, len(s.FallbackMaps)),
	}
	for _, f := range s.FallbackMaps {
		p.fallbacks[fallbackKey{f.Provider, f.FromModel}] = f.ToModel
	}
	triggersOf(p, s)
	uo.Egress, p.proxies = regionEgress(s, region, uo.Egress, log)

	providerKind := make(map[string]string, len(s.Providers))
	for _, pr := range s.Providers {
		providerKind[pr.Name] = pr.Kind
	}
	for _, d := range s.Deployments {
		dep := &Deployment{
			Name: d.Name, Region: d.Region, Kind: d.Kind, Provider: d.Provider,
			ProviderKind: providerKind[d.Provider], Enabled: d.Enabled, spec: d,
		}
		if old, ok := prev.deployment(d.Name); ok && old.Target != nil && old.ProviderKind == dep.ProviderKind && reflect.DeepEqual(old.spec, d) &&
			prev.proxies == p.proxies {
			dep.Target = old.Target
		} else if t, err := upstream.New(d, uo); err != nil {
			dep.BuildErr = err
			log.Warn("deployment unusable", "deployment", d.Name, "err", err)
		} else {
			dep.Target = t
			if !d.TLS.Verify {
				log.Warn("deployment does not verify its upstream's TLS certificate", "deployment", d.Name)
			}
		}
		p.deployments[d.Name] = dep
	}

	for _, m := range s.Models {
		dep, ok := p.deployments[m.Deployment]
		if !ok {
			continue // Decode's Validate rejects this; stay defensive
		}
		model := p.models[m.Name]
		if model == nil {
			model = &Model{Name: m.Name}
			p.models[m.Name] = model
		}
		upstreamModel := m.UpstreamModel
		if upstreamModel == "" {
			upstreamModel = m.Name
		}
		model.Routes = append(model.Routes, Route{Deployment: dep, UpstreamModel: upstreamModel,
			Weight: m.Weight, Home: dep.Region == region, InputUSDPer1M: m.InputUSDPer1M, OutputUSDPer1M: m.OutputUSDPer1M})
	}
	for _, model := range p.models {
		slices.SortStableFunc(model.Routes, func(a, b Route) int {
			if a.Home != b.Home {
				if a.Home {
					return -1
				}
				return 1
			}
			return cmp.Compare(a.Deployment.Name, b.Deployment.Name)
		})
	}

	tiers := make(map[string]*Tier, len(s.Tiers))
	for _, t := range s.Tiers {
		tier := &Tier{Name: t.Name, models: set(t.AllowedModels), operations: set(policy.RequestOperations(t.AllowedOperations)),
			DefaultMaxTokens: t.DefaultMaxTokens, MaxChoices: t.MaxChoices, MaxOutputTokens: t.MaxOutputTokens,
			Limits: Limits{RequestsPerMinute: t.RequestsPerMinute, TokensPerHour: t.TokensPerHour,
				MaxConcurrentRequests: t.MaxConcurrentRequests}}
		for m := range tier.models {
			tier.Models = append(tier.Models, m)
		}
		slices.Sort(tier.Models)
		tiers[t.Name] = tier
	}
	rules := make(map[string]map[string]struct{}, len(s.ResidencyRules))
	endpoints := make(map[string]string, len(s.ResidencyRules))
	for _, r := range s.ResidencyRules {
		rules[r.Residency] = set(r.AllowedRegions)
		endpoints[r.Residency] = r.EndpointURL
	}
	tenantGuardrails := make(map[string]*policy.Guardrails, len(s.Tenants))
	for _, t := range s.Tenants {
		tenantGuardrails[t.Name] = t.Guardrails
	}
	tierGuardrails := make(map[string]policy.Guardrails, len(s.Tiers))
	for _, t := range s.Tiers {
		tierGuardrails[t.Name] = t.Guardrails
	}
	for _, c := range s.Clients {
		tier := tiers[c.Tier]
		if tier == nil {
			tier = &Tier{Name: c.Tier} // allows nothing; Validate rejects this anyway
		}
		client := &Client{ID: c.ClientID, Tenant: c.Tenant, Enabled: c.Enabled, Tier: tier, Residency: c.Residency,
			Guardrails: guardrails.Compile(tierGuardrails[c.Tier].Over(tenantGuardrails[c.Tenant]).Over(c.Guardrails))}
		if c.Residency != "" {
			client.allowedRegions = rules[c.Residency]
			client.Endpoint = endpoints[c.Residency]
			if client.allowedRegions == nil {
				client.allowedRegions = map[string]struct{}{} // a residency without a rule allows nothing
			}
		}
		p.clients[c.ClientID] = client
	}
	for i := range s.LimitOverrides {
		o := s.LimitOverrides[i]
		if c := p.clients[o.ClientID]; c != nil {
			c.override = &o
		}
	}
	for _, r := range s.RevokedTokens {
		p.revoked[r.JTI] = struct{}{}
	}

	var retired []*upstream.Target
	if prev != nil {
		for name, old := range prev.deployments {
			if old.Target == nil {
				continue
			}
			if now, ok := p.deployments[name]; !ok || now.Target != old.Target {
				retired = append(retired, old.Target)
			}
		}
	}
	return p, retired
}

func (p *Policy) deployment(name string) (*Deployment, bool) {
	if p == nil {
		return nil, false
	}
	d, ok := p.deployments[name]
	return d, ok
}

// closeIdle closes the idle upstream connections of every deployment.
func (p *Policy) closeIdle() {
	for _, d := range p.deployments {
		if d.Target != nil {
			d.Target.CloseIdle()
		}
	}
}

func set(items []string) map[string]struct{} {
	s := make(map[string]struct{}, len(items))
	for _, it := range items {
		s[it] = struct{}{}
	}
	return s
}

// regionEgress is the egress of the region's upstream calls: the worker's own, with
// the proxies the policy gives the region in place of its own, if its allowlist
// lets them through; and those proxies, as a key ("" for the worker's own).
func regionEgress(s *policy.Snapshot, region string, own *upstream.Egress, log *slog.Logger) (*upstream.Egress, string) {
	px, ok := s.Settings.Proxy(region)
	if !ok {
		return own, ""
	}
	e, err := own.WithProxies(px.HTTPProxy, px.HTTPSProxy, px.NoProxy)
	if err != nil {
		log.Error("the policy's proxies for this region are refused; upstreams are called as this worker is configured",
			"region", region, "err", err)
		return own, ""
	}
	return e, fmt.Sprintf("%s|%s|%s", px.HTTPProxy, px.HTTPSProxy, strings.Join(px.NoProxy, ","))
}

// triggersOf adds s's fallback triggers to p.
func triggersOf(p *Policy, s *policy.Snapshot) {
	for _, t := range settingsOf(s).Fallbacks {
		p.triggers[t.Provider] = t
	}
}

// settingsOf is s's gateway settings, the zero ones when it has none.
func settingsOf(s *policy.Snapshot) policy.GatewaySettings {
	if s.Settings == nil {
		return policy.GatewaySettings{}
	}
	return *s.Settings
}
