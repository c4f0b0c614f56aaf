package policy

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// SettingsName is the key of the one GatewaySettings the policy holds.
const SettingsName = "gateway"

// GatewaySettings are the gateway-wide settings of the policy: what each data plane
// would otherwise take from its own configuration, changed here without a restart.
// A zero field leaves the data plane's own setting in force.
type GatewaySettings struct {
	Name string       `json:"name"` // always SettingsName
	Auth AuthSettings `json:"auth"`
	// AuditHeaders is the allowlist of request headers audit events record; nil
	// leaves the data plane's PORTCULLIS_AUDIT_HEADERS, empty records none. Credential headers are never
	// recorded, whatever it says.
	AuditHeaders []string `json:"audit_headers"` // [] records none; null is the data plane's own
	// Fallbacks say, per provider, when its requests go to the fallback models of
	// its fallback maps; a provider without one falls back when its deployments'
	// breakers are open or their error rate is above the data plane's
	// PORTCULLIS_FALLBACK_ERROR_RATE.
	Fallbacks []FallbackTrigger `json:"fallbacks,omitempty"`
	// Proxies are, per region, the proxies the region's data planes call upstreams
	// through (in place of their own PORTCULLIS_EGRESS_*_PROXY); each data plane's
	// egress allowlist still bounds both the proxy and the upstreams.
	Proxies []RegionProxy `json:"proxies,omitempty"`
}

// RegionProxy is one region's upstream proxies.
type RegionProxy struct {
	Region     string   `json:"region"`
	HTTPProxy  string   `json:"http_proxy,omitempty"`
	HTTPSProxy string   `json:"https_proxy,omitempty"`
	NoProxy    []string `json:"no_proxy,omitempty"` // hosts, ".suffix" or "*.suffix" domains called directly
}

// Proxy is region's proxies, if s has them.
func (s *GatewaySettings) Proxy(region string) (RegionProxy, bool) {
	if s == nil {
		return RegionProxy{}, false
	}
	for _, p := range s.Proxies {
		if p.Region == region {
			return p, true
		}
	}
	return RegionProxy{}, false
}

// FallbackTrigger is when a provider's requests fall back (a self-hosted fallback's
// enabled_when): while its deployments' breakers are open (CircuitOpen), or while
// their error rate is above ErrorRateAbove (when set). A request whose attempts all
// failed falls back whatever it says.
type FallbackTrigger struct {
	Provider       string   `json:"provider"`
	CircuitOpen    bool     `json:"circuit_open"`
	ErrorRateAbove *float64 `json:"error_rate_above,omitempty"`
}

// Fallback is the trigger of provider, if s has one.
func (s *GatewaySettings) Fallback(provider string) (FallbackTrigger, bool) {
	if s == nil {
		return FallbackTrigger{}, false
	}
	for _, f := range s.Fallbacks {
		if f.Provider == provider {
			return f, true
		}
	}
	return FallbackTrigger{}, false
}

// AuthSettings are what a client token must carry.
type AuthSettings struct {
	// Issuer and Audience are the required iss and aud claims; "" leaves the data
	// plane's PORTCULLIS_JWT_ISSUER and PORTCULLIS_JWT_AUDIENCE.
	Issuer   string `json:"issuer,omitempty"`
	Audience string `json:"audience,omitempty"`
	// RequireClaims are claims a token must carry beyond those always required
	// (exp, client_id, and scope holding llm:access).
	RequireClaims []string `json:"require_claims,omitempty"`
}

var (
	claimName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$`)
	headerName = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]{1,64}$`)
)

// CredentialHeaders are request headers that carry credentials: never audited.
var CredentialHeaders = []string{"authorization", "proxy-authorization", "cookie", "x-api-key"}

// Problems lists what is wrong with s, as field and message pairs.
func (s GatewaySettings) Problems() [][2]string {
	var out [][2]string
	add := func(field, msg string) { out = append(out, [2]string{field, msg}) }
	if s.Name != SettingsName {
		add("name", fmt.Sprintf("must be %q: the policy holds one set of gateway settings", SettingsName))
	}
	if s.Auth.Issuer != "" && (len(s.Auth.Issuer) > 512 || strings.ContainsAny(s.Auth.Issuer, " \t\r\n")) {
		add("auth.issuer", "must be at most 512 characters, without spaces")
	}
	if s.Auth.Audience != "" && (len(s.Auth.Audience) > 512 || strings.ContainsAny(s.Auth.Audience, " \t\r\n")) {
		add("auth.audience", "must be at most 512 characters, without spaces")
	}
	for _, c := range s.Auth.RequireClaims {
		if !claimName.MatchString(c) {
			add("auth.require_claims", fmt.Sprintf("%q is not a claim name", c))
		}
	}
	for _, h := range s.AuditHeaders {
		switch {
		case !headerName.MatchString(h):
			add("audit_headers", fmt.Sprintf("%q is not a header name", h))
		case slices.Contains(CredentialHeaders, strings.ToLower(h)):
			add("audit_headers", fmt.Sprintf("%q carries credentials and is never audited", h))
		}
	}
	seen := map[string]bool{}
	for i, f := range s.Fallbacks {
		field := fmt.Sprintf("fallbacks[%d]", i)
		switch {
		case f.Provider == "":
			add(field+".provider", "names the provider")
		case seen[f.Provider]:
			add(field+".provider", fmt.Sprintf("%q has a trigger already", f.Provider))
		}
		seen[f.Provider] = true
		if r := f.ErrorRateAbove; r != nil && !(*r >= 0 && *r < 1) {
			add(field+".error_rate_above", "must be a rate from 0 up to (not including) 1")
		}
		if !f.CircuitOpen && f.ErrorRateAbove == nil {
			add(field, "never falls back: set circuit_open, error_rate_above or both")
		}
	}
	regions := map[string]bool{}
	for i, p := range s.Proxies {
		field := fmt.Sprintf("proxies[%d]", i)
		switch {
		case p.Region == "":
			add(field+".region", "names the region")
		case regions[p.Region]:
			add(field+".region", fmt.Sprintf("%q has proxies already", p.Region))
		}
		regions[p.Region] = true
		for _, u := range []struct{ name, url string }{{"http_proxy", p.HTTPProxy}, {"https_proxy", p.HTTPSProxy}} {
			if msg := proxyURLProblem(u.url); msg != "" {
				add(field+"."+u.name, msg)
			}
		}
		if p.HTTPProxy == "" && p.HTTPSProxy == "" {
			add(field, "names no proxy: set http_proxy, https_proxy or both")
		}
		for _, h := range p.NoProxy {
			switch {
			case h == "*":
				add(field+".no_proxy", `"*" would bypass the proxy for every host: list the hosts or domains reached directly`)
			case h == "" || strings.ContainsAny(h, " /,") || strings.Contains(strings.TrimPrefix(h, "*."), "*"):
				add(field+".no_proxy", fmt.Sprintf("%q is not a host or domain suffix (host, .domain or *.domain)", h))
			}
		}
	}
	return out
}

// proxyURLProblem says what is wrong with a proxy URL, "" for none or a good one.
func proxyURLProblem(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return "must be an http(s) URL of a proxy: scheme, host and port"
	}
	if u.User != nil {
		return "must not hold credentials: the policy is no place for secrets"
	}
	return ""
}
