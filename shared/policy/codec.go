package policy

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// MaxDecodedSize bounds the size of a decompressed snapshot, so a corrupt or hostile
// entry cannot exhaust a data plane's memory.
const MaxDecodedSize = 256 << 20

// Encode serialises s as gzip-compressed JSON.
func Encode(s *Snapshot) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(s); err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress snapshot: %w", err)
	}
	return buf.Bytes(), nil
}

// Decode parses an encoded snapshot, rejects an unknown schema version and validates
// references between entities. On any error the caller must keep its last good snapshot.
func Decode(data []byte) (*Snapshot, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decompress snapshot: %w", err)
	}
	raw, err := io.ReadAll(io.LimitReader(zr, MaxDecodedSize+1))
	if err != nil {
		return nil, fmt.Errorf("decompress snapshot: %w", err)
	}
	if len(raw) > MaxDecodedSize {
		return nil, fmt.Errorf("snapshot larger than %d bytes", MaxDecodedSize)
	}
	var probe struct {
		SchemaVersion int `json:"schema_version"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("parse snapshot: %w", err)
	}
	if probe.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("snapshot schema version %d: this build reads only %d", probe.SchemaVersion, SchemaVersion)
	}
	var s Snapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("parse snapshot: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks that every reference in s names an entity that exists and that names
// are unique. It reports every problem at once.
func (s *Snapshot) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Version <= 0 {
		bad("version %d: must be positive", s.Version)
	}
	tenants := names(s.Tenants, func(t Tenant) string { return t.Name }, "tenant", bad)
	tiers := names(s.Tiers, func(t Tier) string { return t.Name }, "tier", bad)
	providers := names(s.Providers, func(p Provider) string { return p.Name }, "provider", bad)
	deployments := names(s.Deployments, func(d Deployment) string { return d.Name }, "deployment", bad)
	clients := names(s.Clients, func(c Client) string { return c.ClientID }, "client", bad)
	residencies := names(s.ResidencyRules, func(r ResidencyRule) string { return r.Residency }, "residency rule", bad)
	for _, t := range s.Tiers {
		if t.MaxChoices < 0 || t.MaxChoices > MaxChoicesLimit {
			bad("tier %q: max_choices %d: must be from 0 (no tier cap) to %d", t.Name, t.MaxChoices, MaxChoicesLimit)
		}
		if t.MaxOutputTokens < 0 || t.DefaultMaxTokens < 0 {
			bad("tier %q: max_output_tokens and default_max_tokens must not be negative", t.Name)
		}
		if t.MaxOutputTokens > 0 && t.DefaultMaxTokens > t.MaxOutputTokens {
			bad("tier %q: default_max_tokens %d is over max_output_tokens %d", t.Name, t.DefaultMaxTokens, t.MaxOutputTokens)
		}
		for _, p := range t.Guardrails.Problems("guardrails.") {
			bad("tier %q: %s %s", t.Name, p[0], p[1])
		}
	}
	for _, t := range s.Tenants {
		if t.Guardrails != nil {
			for _, p := range t.Guardrails.Problems("guardrails.") {
				bad("tenant %q: %s %s", t.Name, p[0], p[1])
			}
		}
	}
	if s.Settings != nil {
		for _, p := range s.Settings.Problems() {
			bad("settings: %s %s", p[0], p[1])
		}
	}
	for _, r := range s.ResidencyRules {
		if r.Residency == ResidencyGlobal {
			bad("residency rule %q: the name is reserved for clients without a residency restriction", r.Residency)
		}
		if msg := EndpointURLProblem(r.EndpointURL); msg != "" {
			bad("residency rule %q: endpoint_url %s", r.Residency, msg)
		}
	}
	for _, c := range s.Clients {
		if !tenants[c.Tenant] {
			bad("client %q: unknown tenant %q", c.ClientID, c.Tenant)
		}
		if !tiers[c.Tier] {
			bad("client %q: unknown tier %q", c.ClientID, c.Tier)
		}
		if c.Residency != "" && !residencies[c.Residency] {
			bad("client %q: residency %q has no rule", c.ClientID, c.Residency)
		}
		if c.Guardrails != nil {
			for _, p := range c.Guardrails.Problems("guardrails.") {
				bad("client %q: %s %s", c.ClientID, p[0], p[1])
			}
		}
	}
	for _, d := range s.Deployments {
		if !providers[d.Provider] {
			bad("deployment %q: unknown provider %q", d.Name, d.Provider)
		}
	}
	for _, m := range s.Models {
		if m.Name == "" {
			bad("model %q: empty name", m.ID)
		}
		if !deployments[m.Deployment] {
			bad("model %q: unknown deployment %q", m.Name, m.Deployment)
		}
	}
	for _, f := range s.FallbackMaps {
		if !providers[f.Provider] {
			bad("fallback map %q: unknown provider %q", f.ID, f.Provider)
		}
	}
	overridden := make(map[string]bool, len(s.LimitOverrides))
	for _, o := range s.LimitOverrides {
		if !clients[o.ClientID] {
			bad("limit override: unknown client %q", o.ClientID)
		}
		if overridden[o.ClientID] {
			bad("limit override of client %q: duplicate", o.ClientID)
		}
		overridden[o.ClientID] = true
		if o.RequestsPerMinute < 0 || o.TokensPerHour < 0 || o.MaxConcurrentRequests < 0 {
			bad("limit override of client %q: limits must not be negative", o.ClientID)
		}
	}
	return errors.Join(errs...)
}

func names[T any](items []T, name func(T) string, what string, bad func(string, ...any)) map[string]bool {
	seen := make(map[string]bool, len(items))
	for _, it := range items {
		n := name(it)
		if n == "" {
			bad("%s with empty name", what)
			continue
		}
		if seen[n] {
			bad("%s %q: duplicate", what, n)
		}
		seen[n] = true
	}
	return seen
}

// EndpointURLProblem says what is wrong with a residency rule's endpoint URL, as a
// phrase such as "must be an absolute http or https URL", or returns "" if it is
// fine: empty (no endpoint), or an absolute http or https URL with a host and no
// credentials, query or fragment.
func EndpointURLProblem(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	switch {
	case len(s) > 2048:
		return "must be at most 2048 characters"
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Opaque != "":
		return "must be empty or an absolute http or https URL, e.g. https://eu.gateway.example.com"
	case u.User != nil:
		return "must not hold credentials (user:password@)"
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return "must not have a query or fragment"
	}
	return ""
}
