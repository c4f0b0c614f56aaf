package gatewayconfig

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// Resources are the admin API's collections a file may hold, in the order their
// references need: what an entity names comes before it. Deletions go in reverse.
var Resources = []string{"tenants", "tiers", "residency-rules", "providers", "deployments", "models", "fallback-maps",
	"clients", "anomaly-rules", "settings", "principals"}

// KeyFields are the body fields that hold each resource's key.
var KeyFields = map[string]string{
	"tenants": "name", "tiers": "name", "residency-rules": "residency", "providers": "name", "deployments": "name",
	"models": "id", "fallback-maps": "id", "clients": "client_id", "anomaly-rules": "name", "settings": "name",
	"principals": "name",
}

// Entity is one resource a file asks for: its collection, key and admin API body,
// and where in the file it is.
type Entity struct {
	Resource string
	Key      string
	Body     Body
	// Path is the entity's place in the file; Fields maps a body field (dotted,
	// e.g. "tls.verify") to its own place where that is not Path plus the field.
	Path   []string
	Fields map[string][]string
}

// FieldPath is where the body field (dotted) of e is in the file.
func (e Entity) FieldPath(field string) []string {
	if p, ok := e.Fields[field]; ok {
		return p
	}
	return append(slices.Clone(e.Path), strings.Split(field, ".")...)
}

// Entities are the entities the file asks for, in Resources order and by key, and
// every problem the file format itself finds: a setting the seed shows that
// Portcullis refuses (a raw prompt in the logs, a key in the environment, TLS
// without verification), an entity declared twice, a provider without a region.
// The entities' own rules are the admin API's to check.
func (d *Document) Entities() ([]Entity, Problems) {
	b := &builder{doc: d, f: &d.File, byKey: map[string]*Entity{}}
	b.explicit()
	b.tiers()
	b.providers()
	b.anomalyRules()
	b.settings()
	b.refusals()
	out := make([]Entity, 0, len(b.byKey))
	for _, e := range b.byKey {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(x, y Entity) int {
		if c := slices.Index(Resources, x.Resource) - slices.Index(Resources, y.Resource); c != 0 {
			return c
		}
		return strings.Compare(x.Key, y.Key)
	})
	slices.SortStableFunc(b.problems, func(x, y Problem) int {
		if x.Line != y.Line {
			return x.Line - y.Line
		}
		return x.Column - y.Column
	})
	return out, b.problems
}

// builder collects a file's entities and problems.
type builder struct {
	doc      *Document
	f        *File
	byKey    map[string]*Entity // resource + "/" + key
	problems Problems
}

func (b *builder) fail(message string, path ...string) {
	b.problems = append(b.problems, b.doc.problem(message, path...))
}

// add adds an entity, unless one of its resource and key exists: then it is a
// problem at the second.
func (b *builder) add(e Entity) *Entity {
	id := e.Resource + "/" + e.Key
	if prev, ok := b.byKey[id]; ok {
		b.fail(fmt.Sprintf("%s %q is already declared at %s", strings.TrimSuffix(e.Resource, "s"), e.Key, b.where(prev.Path)), e.Path...)
		return prev
	}
	e.Body[KeyFields[e.Resource]] = e.Key
	b.byKey[id] = &e
	return &e
}

// get is the entity of resource and key, or nil.
func (b *builder) get(resource, key string) *Entity { return b.byKey[resource+"/"+key] }

func (b *builder) where(path []string) string {
	line, col := b.doc.Pos(path...)
	return fmt.Sprintf("%d:%d", line, col)
}

// explicit adds the resources the file declares in Portcullis's own sections.
func (b *builder) explicit() {
	sections := []struct {
		name, resource string
		bodies         map[string]Body
	}{
		{"tenants", "tenants", b.f.Tenants},
		{"tiers", "tiers", b.f.Tiers},
		{"residency_rules", "residency-rules", b.f.ResidencyRules},
		{"providers", "providers", b.f.Providers},
		{"deployments", "deployments", b.f.Deployments},
		{"models", "models", b.f.Models},
		{"fallback_maps", "fallback-maps", b.f.FallbackMaps},
		{"clients", "clients", b.f.Clients},
		{"anomaly_rules", "anomaly-rules", b.f.AnomalyRules},
		{"settings", "settings", b.f.Settings},
		{"principals", "principals", b.f.Principals},
	}
	for _, s := range sections {
		for _, key := range slices.Sorted(maps.Keys(s.bodies)) {
			body := maps.Clone(s.bodies[key])
			if body == nil {
				body = Body{}
			}
			kf := KeyFields[s.resource]
			if v, ok := body[kf]; ok && v != key {
				b.fail(fmt.Sprintf("%s is %v, but the entry's name is %q: leave it out or make them equal", kf, v, key), s.name, key, kf)
			}
			b.add(Entity{Resource: s.resource, Key: key, Body: body, Path: []string{s.name, key}})
		}
	}
}

// tiers adds gateway.per_client_limits: each key a tier.
func (b *builder) tiers() {
	if b.f.Gateway == nil {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(b.f.Gateway.PerClientLimits)) {
		body := maps.Clone(b.f.Gateway.PerClientLimits[name])
		if body == nil {
			body = Body{}
		}
		b.add(Entity{Resource: "tiers", Key: name, Body: body, Path: []string{"gateway", "per_client_limits", name}})
	}
}

// refusedKeySources are the seed's key sources Portcullis never takes, with why.
var refusedKeySources = map[string]string{
	"env_var":   "a key in an environment variable shows in process listings, crash dumps and `kubectl describe`; keep it in Vault (key_source: vault)",
	"hardcoded": "a key in a file under version control is a leaked key; keep it in Vault (key_source: vault)",
}

// publicBaseURLs are the public API endpoints of the cloud providers the seed names,
// for a provider whose upstream_providers block gives none.
var publicBaseURLs = map[string]string{
	policy.ProviderOpenAI:    "https://api.openai.com",
	policy.ProviderAnthropic: "https://api.anthropic.com",
}

// keySources are the key sources the file may name, as the admin API spells them.
var keySources = []string{policy.KeySourceVault, policy.KeySourceVaultDynamic, policy.KeySourceFile, policy.KeySourceNone}

// providers adds the providers of llm_providers and upstream_providers, their
// deployments (declared, or one per provider in the file's region), the keys and
// upstream settings those take, and each self-hosted fallback: its deployments,
// models and fallback maps.
func (b *builder) providers() {
	names := slices.Sorted(maps.Keys(b.f.LLMProviders))
	for _, p := range slices.Sorted(maps.Keys(b.f.UpstreamProviders)) {
		if !slices.Contains(names, p) {
			names = append(names, p)
		}
	}
	for _, p := range names {
		b.provider(p, p, b.providerPath(p))
		keysOK := b.keySourceOK(p)
		deps := b.deploymentsOf(p)
		if len(deps) == 0 {
			if b.f.Region == "" {
				b.fail(fmt.Sprintf("say where %s's deployment runs: set region at the top of the file, or declare deployments with provider %s", p, p),
					b.providerPath(p)...)
				continue
			}
			e := b.add(Entity{Resource: "deployments", Key: p, Body: Body{"provider": p, "region": b.f.Region}, Path: b.providerPath(p)})
			deps = []*Entity{e}
		}
		for _, e := range deps {
			if keysOK {
				b.keySettings(p, e)
			}
			b.upstreamSettings(p, e)
			if u, ok := publicBaseURLs[p]; ok {
				setDefault(e, "base_url", u, b.providerPath(p))
			}
		}
		b.fallback(p, deps)
	}
}

// providerPath is where provider p is first declared: upstream_providers.<p> or
// llm_providers.<p>.
func (b *builder) providerPath(p string) []string {
	if _, ok := b.f.UpstreamProviders[p]; ok {
		return []string{"upstream_providers", p}
	}
	return []string{"llm_providers", p}
}

// provider adds the provider name of kind unless the file declares it.
func (b *builder) provider(name, kind string, path []string) {
	if b.get("providers", name) != nil {
		return
	}
	if !slices.Contains(policy.ProviderKinds, kind) {
		b.fail(fmt.Sprintf("Portcullis cannot tell which API %s speaks: declare it under providers with a kind (one of %s)",
			name, strings.Join(policy.ProviderKinds, ", ")), path...)
		return
	}
	b.add(Entity{Resource: "providers", Key: name, Body: Body{"kind": kind}, Path: path})
}

// deploymentsOf are the deployments the file declares or derives for provider p.
func (b *builder) deploymentsOf(p string) []*Entity {
	var out []*Entity
	for _, e := range b.byKey {
		if e.Resource == "deployments" && e.Body["provider"] == p {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(x, y *Entity) int { return strings.Compare(x.Key, y.Key) })
	return out
}

// setDefault sets field of e to v from the place path, unless e sets it already.
func setDefault(e *Entity, field string, v any, path []string) {
	obj := e.Body
	parts := strings.Split(field, ".")
	for _, k := range parts[:len(parts)-1] {
		next, ok := obj[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[k] = next
		}
		obj = next
	}
	last := parts[len(parts)-1]
	if _, ok := obj[last]; ok {
		return
	}
	obj[last] = v
	if e.Fields == nil {
		e.Fields = map[string][]string{}
	}
	e.Fields[field] = path
}

// keySettings gives deployment e provider p's key settings from llm_providers.
func (b *builder) keySettings(p string, e *Entity) {
	lp, ok := b.f.LLMProviders[p]
	if !ok {
		return
	}
	path := []string{"llm_providers", p}
	at := func(k string) []string { return append(slices.Clone(path), k) }
	setDefault(e, "key_source", lp.KeySource, at("key_source"))
	if lp.VaultPath != "" {
		setDefault(e, "key_path", lp.VaultPath, at("vault_path"))
	}
	if lp.KeyPath != "" {
		setDefault(e, "key_path", lp.KeyPath, at("key_path"))
	}
	if lp.RotationIntervalDays != nil {
		setDefault(e, "rotation_interval_days", *lp.RotationIntervalDays, at("rotation_interval_days"))
	}
	if lp.RotationOverlapHours != nil {
		setDefault(e, "rotation_overlap_hours", *lp.RotationOverlapHours, at("rotation_overlap_hours"))
	}
}

// keySourceOK reports whether provider p's llm_providers key_source, if any, is one
// Portcullis takes, else records why not.
func (b *builder) keySourceOK(p string) bool {
	lp, ok := b.f.LLMProviders[p]
	if !ok {
		return true
	}
	at := []string{"llm_providers", p, "key_source"}
	if why, refused := refusedKeySources[lp.KeySource]; refused {
		b.fail("never: "+why, at...)
		return false
	}
	if !slices.Contains(keySources, lp.KeySource) {
		b.fail(fmt.Sprintf("must be one of %s", strings.Join(keySources, ", ")), at...)
		return false
	}
	if lp.VaultPath != "" && lp.KeyPath != "" {
		b.fail("give vault_path (a Vault key) or key_path (a key file), not both", "llm_providers", p, "key_path")
		return false
	}
	return true
}

// upstreamSettings gives deployment e provider p's settings from upstream_providers.
func (b *builder) upstreamSettings(p string, e *Entity) {
	up, ok := b.f.UpstreamProviders[p]
	if !ok {
		return
	}
	path := []string{"upstream_providers", p}
	at := func(k ...string) []string { return append(slices.Clone(path), k...) }
	if up.BaseURL != "" {
		setDefault(e, "base_url", up.BaseURL, at("base_url"))
	}
	if t := up.TLS; t != nil {
		if t.Verify != nil {
			if !*t.Verify {
				b.fail("never: an upstream without certificate verification lets anyone on the path read the prompts and the provider key; "+
					"for a private CA set tls.ca_file instead", at("tls", "verify")...)
			}
			setDefault(e, "tls.verify", *t.Verify, at("tls", "verify"))
		}
		if t.MinVersion != "" {
			setDefault(e, "tls.min_version", t.MinVersion, at("tls", "min_version"))
		}
		if len(t.PinSHA256) > 0 {
			setDefault(e, "tls.pin_sha256", []string(t.PinSHA256), at("tls", "pin_sha256"))
		}
		if t.CAFile != "" {
			setDefault(e, "tls.ca_file", t.CAFile, at("tls", "ca_file"))
		}
	}
	if up.TimeoutSeconds != nil {
		setDefault(e, "timeout_seconds", *up.TimeoutSeconds, at("timeout_seconds"))
	}
	for _, k := range slices.Sorted(maps.Keys(up.Retry)) {
		setDefault(e, "retry."+k, up.Retry[k], at("retry", k))
	}
	for _, k := range slices.Sorted(maps.Keys(up.CircuitBreaker)) {
		setDefault(e, "circuit_breaker."+k, up.CircuitBreaker[k], at("circuit_breaker", k))
	}
}

// fallback adds provider p's self-hosted fallback: a self-hosted deployment in each
// region of p's deployments (so that failover stays in the region), the model_map's
// target models on them, its source models on p's deployments unless declared, and a
// fallback map per source model.
func (b *builder) fallback(p string, deps []*Entity) {
	up, ok := b.f.UpstreamProviders[p]
	if !ok || up.SelfHostedFallback == nil {
		return
	}
	sh := up.SelfHostedFallback
	path := []string{"upstream_providers", p, "self_hosted_fallback"}
	at := func(k ...string) []string { return append(slices.Clone(path), k...) }
	if sh.EnabledWhen != "" {
		if _, err := ParseCondition(sh.EnabledWhen, p); err != nil {
			b.fail(err.Error(), at("enabled_when")...)
		}
	}
	provider := sh.Provider
	if provider == "" {
		provider = policy.ProviderOllama
	}
	b.provider(provider, provider, at("provider"))
	var regions []string
	for _, d := range deps {
		if r, ok := d.Body["region"].(string); ok && !slices.Contains(regions, r) {
			regions = append(regions, r)
		}
	}
	slices.Sort(regions)
	var targets []string
	for _, r := range regions {
		name := p + "-fallback-" + r
		targets = append(targets, name)
		if b.get("deployments", name) != nil {
			continue // declared under deployments: that one stands
		}
		b.add(Entity{Resource: "deployments", Key: name, Path: path, Fields: map[string][]string{"base_url": at("base_url")},
			Body: Body{"provider": provider, "region": r, "kind": policy.KindSelfHosted, "base_url": sh.BaseURL, "key_source": policy.KeySourceNone}})
	}
	for _, from := range slices.Sorted(maps.Keys(sh.ModelMap)) {
		to := sh.ModelMap[from]
		mpath := at("model_map", from)
		for _, dep := range targets {
			b.model(to, dep, mpath)
		}
		for _, d := range deps {
			b.model(from, d.Key, mpath)
		}
		b.add(Entity{Resource: "fallback-maps", Key: p + "." + from, Path: mpath,
			Body: Body{"provider": p, "from_model": from, "to_model": to}})
	}
}

// model adds the model name on deployment unless the file declares one.
func (b *builder) model(name, deployment string, path []string) {
	for _, e := range b.byKey {
		if e.Resource == "models" && e.Body["name"] == name && e.Body["deployment"] == deployment {
			return
		}
	}
	b.add(Entity{Resource: "models", Key: name + "." + deployment, Path: path,
		Body: Body{"name": name, "deployment": deployment, "upstream_model": name}})
}

// anomalyRules adds anomaly_detection: each rule by its name, which is its kind.
func (b *builder) anomalyRules() {
	for i, r := range b.f.AnomalyDetection {
		path := []string{"anomaly_detection", strconv.Itoa(i)}
		at := func(k string) []string { return append(slices.Clone(path), k) }
		body := Body{"kind": r.Rule}
		if r.Action != "" {
			body["action"] = r.Action
		}
		fields := map[string][]string{"kind": at("rule"), "action": at("action")}
		if r.Condition != "" {
			k, v, err := parseRuleCondition(r.Rule, r.Condition)
			if err != nil {
				b.fail(err.Error(), at("condition")...)
				continue
			}
			body[k], fields[k] = v, at("condition")
		}
		b.add(Entity{Resource: "anomaly-rules", Key: r.Rule, Body: body, Path: path, Fields: fields})
	}
}

var (
	spikeCondition = regexp.MustCompile(`^\s*tokens_per_hour\s*>\s*([0-9]+(?:\.[0-9]+)?)\s*x_baseline\s*$`)
	flagCondition  = regexp.MustCompile(`^\s*flagged_share\s*>\s*([0-9]*\.?[0-9]+)\s*$`)
)

// parseRuleCondition reads an anomaly rule's condition: for token_spike
// "tokens_per_hour > <factor>x_baseline", for flag_rate "flagged_share > <share>".
func parseRuleCondition(rule, cond string) (field string, v float64, err error) {
	var re *regexp.Regexp
	switch rule {
	case "token_spike":
		re, field = spikeCondition, "factor"
	case "flag_rate":
		re, field = flagCondition, "flag_share"
	default:
		return "", 0, fmt.Errorf("a %s rule takes no condition here: set its settings under anomaly_rules", rule)
	}
	m := re.FindStringSubmatch(cond)
	if m == nil {
		if rule == "token_spike" {
			return "", 0, fmt.Errorf(`%q is not a token_spike condition: write "tokens_per_hour > 5x_baseline"`, cond)
		}
		return "", 0, fmt.Errorf(`%q is not a flag_rate condition: write "flagged_share > 0.2"`, cond)
	}
	v, _ = strconv.ParseFloat(m[1], 64)
	return field, v, nil
}

// settings puts gateway.auth's issuer, audience and claims and logging.request's
// log_headers into the gateway settings (settings.gateway), where the file does not
// set them there itself.
func (b *builder) settings() {
	var auth *Auth
	if b.f.Gateway != nil {
		auth = b.f.Gateway.Auth
	}
	var headers []string
	if b.f.Logging != nil && b.f.Logging.Request != nil {
		headers = b.f.Logging.Request.LogHeaders
	}
	// Each self-hosted fallback's enabled_when, in provider order.
	var triggers []any
	var triggerPath []string
	for _, p := range slices.Sorted(maps.Keys(b.f.UpstreamProviders)) {
		sh := b.f.UpstreamProviders[p].SelfHostedFallback
		if sh == nil || sh.EnabledWhen == "" {
			continue
		}
		c, err := ParseCondition(sh.EnabledWhen, p)
		if err != nil {
			continue // reported by fallback
		}
		t := map[string]any{"provider": p, "circuit_open": c.CircuitOpen}
		if c.ErrorRateAbove != nil {
			t["error_rate_above"] = *c.ErrorRateAbove
		}
		triggers = append(triggers, t)
		if triggerPath == nil {
			triggerPath = []string{"upstream_providers", p, "self_hosted_fallback", "enabled_when"}
		}
	}
	proxies, proxyPath := b.proxies()
	if auth == nil && headers == nil && triggers == nil && proxies == nil {
		return
	}
	e := b.get("settings", policy.SettingsName)
	if e == nil {
		path := []string{"gateway", "auth"}
		switch {
		case auth == nil && headers != nil:
			path = []string{"logging", "request"}
		case auth == nil && triggers != nil:
			path = triggerPath
		case auth == nil:
			path = proxyPath
		}
		e = b.add(Entity{Resource: "settings", Key: policy.SettingsName, Body: Body{}, Path: path})
	}
	at := func(k ...string) []string { return append([]string{"gateway", "auth"}, k...) }
	if auth != nil {
		if auth.JWTIssuer != "" {
			setDefault(e, "auth.issuer", auth.JWTIssuer, at("jwt_issuer"))
		}
		if auth.JWTAudience != "" {
			setDefault(e, "auth.audience", auth.JWTAudience, at("jwt_audience"))
		}
		if len(auth.RequireClaims) > 0 {
			setDefault(e, "auth.require_claims", slices.Clone(auth.RequireClaims), at("require_claims"))
		}
	}
	if headers != nil {
		setDefault(e, "audit_headers", slices.Clone(headers), []string{"logging", "request", "log_headers"})
	}
	if triggers != nil {
		setDefault(e, "fallbacks", triggers, triggerPath)
	}
	if proxies != nil {
		setDefault(e, "proxies", proxies, proxyPath)
	}
}

// proxies are the upstream_providers' proxy blocks, per region of each provider's
// deployments, and where the first is; two providers that give one region
// different proxies are a problem.
func (b *builder) proxies() ([]any, []string) {
	type proxy struct {
		body Body
		from string
	}
	byRegion := map[string]proxy{}
	var first []string
	for _, p := range slices.Sorted(maps.Keys(b.f.UpstreamProviders)) {
		px := b.f.UpstreamProviders[p].Proxy
		if px == nil {
			continue
		}
		path := []string{"upstream_providers", p, "proxy"}
		if first == nil {
			first = path
		}
		for _, d := range b.deploymentsOf(p) {
			region, _ := d.Body["region"].(string)
			body := Body{"region": region}
			if px.HTTPProxy != "" {
				body["http_proxy"] = px.HTTPProxy
			}
			if px.HTTPSProxy != "" {
				body["https_proxy"] = px.HTTPSProxy
			}
			if len(px.NoProxy) > 0 {
				body["no_proxy"] = slices.Clone(px.NoProxy)
			}
			if prev, ok := byRegion[region]; ok && !reflect.DeepEqual(prev.body, body) {
				b.fail(fmt.Sprintf("region %s has other proxies from upstream_providers.%s: a region's data planes have one set of proxies", region, prev.from), path...)
				continue
			}
			byRegion[region] = proxy{body, p}
		}
	}
	if len(byRegion) == 0 {
		return nil, nil
	}
	var out []any
	for _, r := range slices.Sorted(maps.Keys(byRegion)) {
		out = append(out, byRegion[r].body)
	}
	return out, first
}

// refusals checks the seed's settings that have no entity: the logging and
// authentication blocks. A setting Portcullis cannot honour is refused, never
// ignored.
func (b *builder) refusals() {
	if l := b.f.Logging; l != nil {
		if r := l.Request; r != nil {
			if r.LogPromptRaw != nil && *r.LogPromptRaw {
				b.fail("never: raw prompts carry personal data into every log copy (GDPR, HIPAA); the audit keeps a keyed hash (log_prompt_hash)",
					"logging", "request", "log_prompt_raw")
			}
			if r.LogMetadata != nil && !*r.LogMetadata {
				b.fail("the audit trail always keeps each request's metadata: it is what the trail is", "logging", "request", "log_metadata")
			}
			if r.LogPromptHash != nil && !*r.LogPromptHash {
				b.fail("the audit trail always keeps the prompt's keyed hash, which holds no prompt text", "logging", "request", "log_prompt_hash")
			}
		}
		if r := l.Response; r != nil {
			if r.LogResponseRaw != nil && *r.LogResponseRaw {
				b.fail("never: raw answers carry personal data into every log copy; the audit keeps a keyed hash (log_response_hash)",
					"logging", "response", "log_response_raw")
			}
			if r.LogMetadata != nil && !*r.LogMetadata {
				b.fail("the audit trail always keeps each answer's metadata", "logging", "response", "log_metadata")
			}
			if r.LogResponseHash != nil && !*r.LogResponseHash {
				b.fail("the audit trail always keeps the answer's keyed hash, which holds no answer text", "logging", "response", "log_response_hash")
			}
		}
		if l.Format != "" && l.Format != "json" {
			b.fail("the gateway logs JSON lines only", "logging", "format")
		}
	}
	if b.f.Gateway != nil && b.f.Gateway.Auth != nil {
		a := b.f.Gateway.Auth
		if a.Method != "jwt" {
			b.fail("must be jwt: clients authenticate with signed JWTs, never a shared API key", "gateway", "auth", "method")
		}
		if o := a.OnAuthFailure; o != nil {
			if o.Action != "reject" {
				b.fail("must be reject: a request that fails authentication is never served", "gateway", "auth", "on_auth_failure", "action")
			}
			if o.ResponseCode != 0 && o.ResponseCode != 401 {
				b.fail("must be 401, the status of a failed authentication", "gateway", "auth", "on_auth_failure", "response_code")
			}
		}
	}
}
