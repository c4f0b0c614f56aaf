package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// DefaultUpstreamURL is where the dev stack's mock OpenAI-compatible upstream listens.
const DefaultUpstreamURL = "http://127.0.0.1:9100"

// Where the dev stack's data planes listen by default (make run): the endpoint URLs
// of the demo's residency rules eu and us.
const (
	DefaultEUEndpointURL = "http://127.0.0.1:8081"
	DefaultUSEndpointURL = "http://127.0.0.1:8082"
)

// seedItem is one entity the demo seed creates.
type seedItem struct {
	resource string
	key      string
	body     any
}

// demoDeployment is one deployment of the mock upstream in the demo.
type demoDeployment struct {
	name, provider, region, kind string
	// keyed: the deployment presents the --key-file's key upstream.
	keyed bool
}

var demoDeployments = []demoDeployment{
	{"openai-us", "openai", "us", policy.KindCloud, true},
	{"openai-eu", "openai", "eu", policy.KindCloud, true},
	{"anthropic-us", "anthropic", "us", policy.KindCloud, true},
	{"anthropic-eu", "anthropic", "eu", policy.KindCloud, true},
	{"ollama-eu", "ollama", "eu", policy.KindSelfHosted, false},
}

// demoOptions are what the demo seed cannot know: where the dev stack runs.
type demoOptions struct {
	upstreamURL string            // the mock upstream
	keyFile     string            // the keyed deployments' key
	endpoints   map[string]string // residency rule → the URL of its region's data plane
}

// demoSeed is the demo tenant: the seed document's three tiers, the residency rules
// eu and us with the endpoints of the dev stack's data planes, the dev stack's
// deployments of the mock upstream, their models and three clients, each with an
// explicit residency. Every deployment has the base URL <upstreamURL>/d/<name>,
// which the mock serves as that deployment, so that a failure can be injected into
// one deployment at a time. The keyed deployments read their key from keyFile.
func demoSeed(o demoOptions) []seedItem {
	upstreamURL, keyFile := o.upstreamURL, o.keyFile
	allOps := policy.DefaultOperations
	items := []seedItem{
		{"tenants", "demo", policy.Tenant{Name: "demo", DisplayName: "Demo tenant"}},
		{"tiers", "default", policy.Tier{Name: "default", RequestsPerMinute: 60, TokensPerHour: 100_000,
			MaxConcurrentRequests: 5, AllowedModels: []string{"gpt-4o-mini"}, AllowedOperations: allOps, DefaultMaxTokens: 1024}},
		{"tiers", "tier_premium", policy.Tier{Name: "tier_premium", RequestsPerMinute: 600, TokensPerHour: 2_000_000,
			MaxConcurrentRequests: 50, AllowedModels: []string{"gpt-4o", "claude-3-5-sonnet", "llama3-70b"},
			AllowedOperations: allOps, DefaultMaxTokens: 4096}},
		{"tiers", "service_account_analytics", policy.Tier{Name: "service_account_analytics", RequestsPerMinute: 30,
			TokensPerHour: 50_000, MaxConcurrentRequests: 3, AllowedModels: []string{"gpt-4o-mini"},
			AllowedOperations: []string{policy.OpCompletion}, DefaultMaxTokens: 1024}},
		{"residency-rules", "eu", residencyRule("eu", o.endpoints["eu"])},
		{"residency-rules", "us", residencyRule("us", o.endpoints["us"])},
		{"providers", "openai", policy.Provider{Name: "openai", Kind: policy.ProviderOpenAI}},
		{"providers", "ollama", policy.Provider{Name: "ollama", Kind: policy.ProviderOllama}},
		{"providers", "anthropic", policy.Provider{Name: "anthropic", Kind: policy.ProviderAnthropic}},
	}
	for _, d := range demoDeployments {
		items = append(items, seedItem{"deployments", d.name, deployment(d, upstreamURL, keyFile)})
	}
	models := []struct {
		name        string
		deployments []string
		in, out     float64 // USD per 1M tokens
	}{
		{"gpt-4o", []string{"openai-us", "openai-eu"}, 2.50, 10.00},
		{"gpt-4o-mini", []string{"openai-us", "openai-eu"}, 0.15, 0.60},
		{"claude-3-5-sonnet", []string{"anthropic-us", "anthropic-eu"}, 3.00, 15.00}, // the mock speaks the Messages API too
		{"llama3-70b", []string{"ollama-eu"}, 0, 0},
		{"llama3-8b", []string{"ollama-eu"}, 0, 0},
	}
	for _, m := range models {
		for _, d := range m.deployments {
			id := m.name + "." + d
			items = append(items, seedItem{"models", id, policy.Model{ID: id, Name: m.name, Deployment: d,
				UpstreamModel: m.name, InputUSDPer1M: m.in, OutputUSDPer1M: m.out}})
		}
	}
	for _, f := range []struct{ from, to string }{{"gpt-4o", "llama3-70b"}, {"gpt-4o-mini", "llama3-8b"}} {
		id := "openai." + f.from
		items = append(items, seedItem{"fallback-maps", id, policy.FallbackMap{ID: id, Provider: "openai", FromModel: f.from, ToModel: f.to}})
	}
	return append(items,
		seedItem{"clients", "moltbot-agent-07", demoClient("moltbot-agent-07", "default", "eu")},
		seedItem{"clients", "premium-app", demoClient("premium-app", "tier_premium", policy.ResidencyGlobal)},
		seedItem{"clients", "analytics-svc", demoClient("analytics-svc", "service_account_analytics", policy.ResidencyGlobal)},
	)
}

// deployment is d's body. Every key setting is spelled out, with null for "none"
// (the API's default), so that reseeding returns a deployment whose keys were moved
// elsewhere (make run moves them to a dev Vault) to the key file cleanly; the other
// settings take the API's creation defaults.
func deployment(d demoDeployment, upstreamURL, keyFile string) map[string]any {
	b := map[string]any{
		"name":     d.name,
		"provider": d.provider,
		"region":   d.region,
		"kind":     d.kind,
		"base_url": demoBaseURL(upstreamURL, d.name),

		"key_source":             policy.KeySourceNone,
		"key_path":               nil,
		"minter":                 nil,
		"admin_key_path":         nil,
		"admin_project_id":       nil,
		"rotation_interval_days": 0,
	}
	if d.keyed {
		b["key_source"], b["key_path"] = policy.KeySourceFile, keyFile
	}
	return b
}

// demoBaseURL is deployment's base URL on the mock upstream at upstreamURL.
func demoBaseURL(upstreamURL, deployment string) string {
	return strings.TrimRight(upstreamURL, "/") + "/d/" + deployment
}

// residencyRule is the body of the demo's residency rule name, allowing its own
// region. The endpoint is spelled out, with null for none, so that reseeding without
// one removes an old one.
func residencyRule(name, endpointURL string) map[string]any {
	b := map[string]any{"residency": name, "allowed_regions": []string{name}, "endpoint_url": nil}
	if endpointURL != "" {
		b["endpoint_url"] = endpointURL
	}
	return b
}

// demoClient is a demo client's body; residency is a rule's name or "global".
func demoClient(id, tier, residency string) map[string]any {
	return map[string]any{"client_id": id, "tenant": "demo", "tier": tier, "residency": residency, "enabled": true}
}

// seedDemo creates the demo tenant's entities. It is idempotent: an entity that
// already exists is reconciled to the seed (for example when a new checkout's key file
// lives elsewhere) and left alone when it already matches. The keyed deployments read
// --key-file. (make run then moves the keys to a dev Vault when it has one; that
// writes to Vault with a root token, so it lives in the dev stack,
// tests/cmd/portcullis-dev, not here.)
func (cmd *command) seedDemo(ctx context.Context, args []string) error {
	fs := cmd.newFlags("seed demo", "seed demo [--upstream-url URL] [--eu-endpoint-url URL] [--us-endpoint-url URL] --key-file PATH")
	upstream := fs.String("upstream-url", DefaultUpstreamURL, "URL of the mock upstream; deployment NAME gets the base URL <URL>/d/NAME")
	keyFile := fs.String("key-file", "", "file holding the upstream key of the openai and anthropic deployments (key_source file; required)")
	euURL := fs.String("eu-endpoint-url", DefaultEUEndpointURL, "the eu data plane's URL: residency rule eu's endpoint_url (\"\" for none)")
	usURL := fs.String("us-endpoint-url", DefaultUSEndpointURL, "the us data plane's URL: residency rule us's endpoint_url (\"\" for none)")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	if *keyFile == "" {
		fs.Usage()
		return fmt.Errorf("%w: --key-file is required", ErrUsage)
	}
	for _, e := range []struct{ flag, url string }{{"--eu-endpoint-url", *euURL}, {"--us-endpoint-url", *usURL}} {
		if msg := policy.EndpointURLProblem(e.url); msg != "" {
			return fmt.Errorf("%w: %s %s", ErrUsage, e.flag, msg)
		}
	}
	// The data planes read the key file; an absolute path works from any directory.
	abs, err := filepath.Abs(*keyFile)
	if err != nil {
		return fmt.Errorf("--key-file: %w", err)
	}
	c, err := cmd.client()
	if err != nil {
		return err
	}
	var created, updated, unchanged int
	opts := demoOptions{upstreamURL: *upstream, keyFile: abs, endpoints: map[string]string{"eu": *euURL, "us": *usURL}}
	for _, it := range demoSeed(opts) {
		body, err := json.Marshal(it.body)
		if err != nil {
			return err
		}
		_, err = c.call(ctx, http.MethodPost, "/"+it.resource, body, nil)
		var apiErr *APIError
		switch {
		case err == nil:
			created++
			fmt.Fprintf(cmd.io.Stderr, "created   %s %s\n", it.resource, it.key)
		case errors.As(err, &apiErr) && apiErr.Code == apierr.Conflict:
			changed, err := reconcile(ctx, c, itemPath(it.resource, it.key), body)
			if err != nil {
				return fmt.Errorf("seed %s %s: %w", it.resource, it.key, err)
			}
			if changed {
				updated++
				fmt.Fprintf(cmd.io.Stderr, "updated   %s %s\n", it.resource, it.key)
			} else {
				unchanged++
				fmt.Fprintf(cmd.io.Stderr, "unchanged %s %s\n", it.resource, it.key)
			}
		default:
			return fmt.Errorf("seed %s %s: %w", it.resource, it.key, err)
		}
	}
	fmt.Fprintf(cmd.io.Stderr, "demo seed: %d created, %d updated, %d unchanged\n", created, updated, unchanged)
	return nil
}

// reconcile makes the existing item at path carry every field of want, patching it
// with its current ETag only when some field differs. It reports whether it patched.
func reconcile(ctx context.Context, c *client, path string, want []byte) (bool, error) {
	cur, err := c.call(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return false, err
	}
	var have, desired map[string]any
	if err := json.Unmarshal(cur.body, &have); err != nil {
		return false, fmt.Errorf("decode current: %w", err)
	}
	if err := json.Unmarshal(want, &desired); err != nil {
		return false, err
	}
	same := true
	for k, v := range desired {
		if !reflect.DeepEqual(have[k], v) {
			same = false
			break
		}
	}
	if same {
		return false, nil
	}
	_, err = c.call(ctx, http.MethodPatch, path, want, map[string]string{"If-Match": cur.header.Get("ETag")})
	return err == nil, err
}
