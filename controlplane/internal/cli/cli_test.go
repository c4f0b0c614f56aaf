package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"

	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/portcullis-gw/portcullis/controlplane/app"
	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/identity"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// controlPlane starts a real control plane (fresh database, embedded NATS, dev
// issuer); each tweak may change its config first.
func controlPlane(t *testing.T, tweaks ...func(*app.Config)) (*app.App, app.Config) {
	t.Helper()
	cfg := app.Config{
		DatabaseURL:        pgtest.Database(t),
		Listen:             "127.0.0.1:0",
		EmbeddedNATSListen: "127.0.0.1:0",
		DataDir:            t.TempDir(),
		LogLevel:           "info",
		DevIssuer:          true,
		PublishInterval:    app.DefaultPublishInterval,
		NATSReplicas:       app.DefaultNATSReplicas,
		WorkerTTL:          app.DefaultWorkerTTL,
		KeyDir:             os.TempDir(), // the tests' key files are in t.TempDir()s
	}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := app.Start(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	return a, cfg
}

// cliRun runs the CLI against a with an administrator's API token in
// PORTCULLIS_ADMIN_TOKEN.
type cliRun struct {
	t       *testing.T
	a       *app.App
	dataDir string
	token   string
}

func newCLI(t *testing.T, tweaks ...func(*app.Config)) cliRun {
	a, cfg := controlPlane(t, tweaks...)
	return cliFor(t, a, cfg)
}

// cliFor is the CLI against a, as a new service account with the admin role.
func cliFor(t *testing.T, a *app.App, cfg app.Config) cliRun {
	return cliRun{t: t, a: a, dataDir: cfg.DataDir, token: admintest.Admin(t, "http://"+a.Addr(), cfg.DataDir)}
}

func (c cliRun) run(args ...string) (stdout, stderr string, err error) {
	c.t.Helper()
	var out, errOut bytes.Buffer
	full := append([]string{"--admin-url", "http://" + c.a.Addr(), "--data-dir", c.dataDir}, args...)
	err = Run(context.Background(), full, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut},
		func(k string) string { return map[string]string{EnvAdminToken: c.token}[k] })
	if strings.Contains(out.String()+errOut.String(), c.token) {
		c.t.Fatalf("portcullis %q printed the admin token", args)
	}
	return out.String(), errOut.String(), err
}

func (c cliRun) mustRun(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("portcullis %q: %v\nstderr: %s", args, err, errOut)
	}
	return out
}

// demoFile is make run's demo configuration, with its ${DEMO_...} values filled in
// as the dev stack does, written to a temporary file.
func demoFile(t *testing.T, keyFile, euURL string) string {
	t.Helper()
	raw, err := os.ReadFile("../../../deploy/demo/gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := strings.NewReplacer("${DEMO_UPSTREAM_URL}", "http://127.0.0.1:9100", "${DEMO_KEY_FILE}", keyFile,
		"${DEMO_EU_ENDPOINT_URL}", euURL, "${DEMO_US_ENDPOINT_URL}", "http://127.0.0.1:8082").Replace(string(raw))
	if regexp.MustCompile(`\$\{[A-Z0-9_]+\}`).MatchString(out) {
		t.Fatalf("the demo configuration has a value the test does not fill in:\n%s", out)
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDemoConfigAndMintPrintsAJWT: make run's demo configuration applies, then
// applies as no change; a new checkout's key file repoints exactly the four keyed
// deployments, and another eu data plane exactly the eu residency rule; the demo
// has the seed's three tiers, its models, deployments and clients; a minted token
// verifies.
func TestDemoConfigAndMintPrintsAJWT(t *testing.T) {
	c := newCLI(t)
	keyFile := filepath.Join(t.TempDir(), "upstream.key")
	if err := os.WriteFile(keyFile, []byte("test-upstream-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	first := c.mustRun("apply", "-f", demoFile(t, keyFile, "http://127.0.0.1:8081"))
	if !strings.Contains(first, "+ create tenant demo") || !strings.Contains(first, "applied: policy version") {
		t.Fatalf("the first apply:\n%s", first)
	}
	if again := c.mustRun("apply", "-f", demoFile(t, keyFile, "http://127.0.0.1:8081")); !strings.HasPrefix(again, "no changes") {
		t.Fatalf("the second apply changed something:\n%s", again)
	}
	// A new checkout keeps its key file elsewhere: the apply repoints the deployments.
	movedKey := filepath.Join(t.TempDir(), "moved.key")
	if err := os.WriteFile(movedKey, []byte("test-upstream-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	third := c.mustRun("apply", "-f", demoFile(t, movedKey, "http://127.0.0.1:8081"))
	if strings.Count(third, "~ update deployment ") != 4 || strings.Count(third, "~ update ") != 4 ||
		!strings.Contains(third, "~ update deployment openai-eu\n    key_path: ") {
		t.Fatalf("the apply with a moved key file did not repoint exactly the four keyed deployments:\n%s", third)
	}
	var dep policy.Deployment
	decode(t, c.mustRun("deployments", "get", "openai-us"), &dep)
	if dep.KeyPath != movedKey {
		t.Fatalf("openai-us key_path = %q, want %q", dep.KeyPath, movedKey)
	}
	var rules []policy.ResidencyRule
	decode(t, c.mustRun("residency-rules", "list"), &rules)
	wantRules := []policy.ResidencyRule{
		{Residency: "eu", AllowedRegions: []string{"eu"}, EndpointURL: "http://127.0.0.1:8081"},
		{Residency: "us", AllowedRegions: []string{"us"}, EndpointURL: "http://127.0.0.1:8082"},
	}
	if !equalJSON(t, rules, wantRules) {
		t.Errorf("residency rules = %+v, want %+v", rules, wantRules)
	}
	fifth := c.mustRun("apply", "-f", demoFile(t, movedKey, "http://127.0.0.1:18081"))
	if strings.Count(fifth, "~ update ") != 1 || !strings.Contains(fifth, "~ update residency-rule eu") {
		t.Fatalf("another eu data plane did not repoint exactly residency rule eu:\n%s", fifth)
	}

	var tiers []policy.Tier
	decode(t, c.mustRun("tiers", "list"), &tiers)
	want := map[string]policy.Tier{
		"default": {Name: "default", RequestsPerMinute: 60, TokensPerHour: 100000, MaxConcurrentRequests: 5,
			AllowedModels: []string{"gpt-4o-mini"}, AllowedOperations: policy.DefaultOperations, DefaultMaxTokens: 1024},
		"tier_premium": {Name: "tier_premium", RequestsPerMinute: 600, TokensPerHour: 2000000, MaxConcurrentRequests: 50,
			AllowedModels: []string{"gpt-4o", "claude-3-5-sonnet", "llama3-70b"}, AllowedOperations: policy.DefaultOperations, DefaultMaxTokens: 4096},
		"service_account_analytics": {Name: "service_account_analytics", RequestsPerMinute: 30, TokensPerHour: 50000, MaxConcurrentRequests: 3,
			AllowedModels: []string{"gpt-4o-mini"}, AllowedOperations: []string{"completion"}, DefaultMaxTokens: 1024},
	}
	if len(tiers) != len(want) {
		t.Fatalf("%d tiers, want %d", len(tiers), len(want))
	}
	for _, got := range tiers {
		if w := want[got.Name]; !equalJSON(t, got, w) {
			t.Errorf("tier %s = %+v, want %+v", got.Name, got, w)
		}
	}

	var models []policy.Model
	decode(t, c.mustRun("models", "list"), &models)
	if len(models) != 8 {
		t.Fatalf("%d models, want 8", len(models))
	}
	var deps []policy.Deployment
	decode(t, c.mustRun("deployments", "list"), &deps)
	for _, d := range deps {
		wantKey := map[string]string{"openai-us": movedKey, "openai-eu": movedKey, "anthropic-us": movedKey, "anthropic-eu": movedKey, "ollama-eu": ""}[d.Name]
		if d.KeyPath != wantKey || d.BaseURL != "http://127.0.0.1:9100/d/"+d.Name {
			t.Errorf("deployment %s: key_path %q base_url %q", d.Name, d.KeyPath, d.BaseURL)
		}
	}
	var moltbot policy.Client
	decode(t, c.mustRun("clients", "get", "moltbot-agent-07"), &moltbot)
	if moltbot.Tier != "default" || moltbot.Residency != "eu" || !moltbot.Enabled || moltbot.Tenant != "demo" {
		t.Fatalf("moltbot-agent-07 = %+v", moltbot)
	}
	// Every seeded client has an explicit residency.
	var clients []policy.Client
	decode(t, c.mustRun("clients", "list"), &clients)
	wantResidency := map[string]string{"moltbot-agent-07": "eu", "premium-app": policy.ResidencyGlobal, "analytics-svc": policy.ResidencyGlobal}
	for _, cl := range clients {
		if cl.Residency != wantResidency[cl.ClientID] {
			t.Errorf("client %s has residency %q, want %q", cl.ClientID, cl.Residency, wantResidency[cl.ClientID])
		}
	}
	if len(clients) != len(wantResidency) {
		t.Errorf("%d clients, want %d", len(clients), len(wantResidency))
	}

	out := c.mustRun("tokens", "mint", "--client", "moltbot-agent-07", "--ttl", "10m")
	raw := strings.TrimSpace(out)
	if strings.Count(raw, ".") != 2 || strings.Contains(raw, "\n") {
		t.Fatalf("tokens mint printed %q, want only a JWT", out)
	}
	set, err := jwk.Fetch(context.Background(), c.a.JWKSURL())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithIssuer(c.a.IssuerURL()), jwt.WithAudience(identity.DefaultAudience))
	if err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if id, _ := tok.Get(identity.ClaimClientID); id != "moltbot-agent-07" {
		t.Fatalf("client_id claim %v", id)
	}
}

func TestResourceCommands(t *testing.T) {
	c := newCLI(t)
	steps := []struct {
		name       string
		args       []string
		wantCode   apierr.Code // "" means success
		wantField  string
		wantStdout string
	}{
		{"create from --json", []string{"tenants", "create", "--json", `{"name":"acme","display_name":"Acme"}`}, "", "", `"acme"`},
		{"create again conflicts", []string{"tenants", "create", "--json", `{"name":"acme"}`}, apierr.Conflict, "", ""},
		{"create invalid names the field", []string{"tenants", "create", "--json", `{"name":"Not A Slug"}`}, apierr.ValidationFailed, "name", ""},
		{"get", []string{"tenants", "get", "acme"}, "", "", `"display_name": "Acme"`},
		{"update merges with If-Match", []string{"tenants", "update", "acme", "--json", `{"display_name":"Acme Corp"}`}, "", "", `"Acme Corp"`},
		{"get unknown", []string{"tenants", "get", "nobody"}, apierr.NotFound, "", ""},
		{"tier", []string{"tiers", "create", "--json", `{"name":"t1","requests_per_minute":1,"tokens_per_hour":1,"max_concurrent_requests":1,"allowed_models":[]}`}, "", "", `"t1"`},
		{"tier with request bounds", []string{"tiers", "create", "--max-choices", "4", "--max-output-tokens", "2048", "--json",
			`{"name":"t2","requests_per_minute":1,"tokens_per_hour":1,"max_concurrent_requests":1,"default_max_tokens":1024}`}, "", "", `"max_choices": 4,
  "max_output_tokens": 2048`},
		{"tier bound by flag alone", []string{"tiers", "update", "t2", "--max-output-tokens", "0"}, "", "", `"max_output_tokens": 0`},
		{"tier bound out of range", []string{"tiers", "update", "t2", "--max-choices", "129"}, apierr.ValidationFailed, "max_choices", ""},
		{"tier default over the cap", []string{"tiers", "update", "t2", "--max-output-tokens", "512"}, apierr.ValidationFailed, "default_max_tokens", ""},
		{"residency rule with endpoint", []string{"residency-rules", "create", "--json", `{"residency":"ch","allowed_regions":["ch"]}`,
			"--endpoint-url", "https://ch.gateway.example.com"}, "", "", `"endpoint_url": "https://ch.gateway.example.com"`},
		{"residency rule with a bad endpoint", []string{"residency-rules", "update", "ch", "--endpoint-url", "ch.gateway.example.com"},
			apierr.ValidationFailed, "endpoint_url", ""},
		{"residency rule global", []string{"residency-rules", "create", "--json", `{"residency":"global","allowed_regions":["ch"]}`},
			apierr.ValidationFailed, "residency", ""},
		{"client", []string{"clients", "create", "--json", `{"client_id":"app-1","tenant":"acme","tier":"t1"}`, "--residency", "global"}, "", "", `"residency": "global"`},
		{"client with residency in the body", []string{"clients", "create", "--json", `{"client_id":"app-2","tenant":"acme","tier":"t1","residency":"ch"}`}, "", "", `"residency": "ch"`},
		{"client with an unknown residency", []string{"clients", "create", "--json", `{"client_id":"app-3","tenant":"acme","tier":"t1"}`, "--residency", "mars"},
			apierr.ValidationFailed, "residency", ""},
		{"client residency by flag alone", []string{"clients", "update", "app-2", "--residency", "global"}, "", "", `"residency": "global"`},
		{"delete second client", []string{"clients", "delete", "app-2"}, "", "", ""},
		{"disable", []string{"clients", "disable", "app-1"}, "", "", `"enabled": false`},
		{"enable", []string{"clients", "enable", "app-1"}, "", "", `"enabled": true`},
		{"delete referenced tenant conflicts", []string{"tenants", "delete", "acme"}, apierr.Conflict, "", ""},
		{"revoke", []string{"tokens", "revoke", "--jti", "abc-123", "--expires-at", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "--reason", "leaked"}, "", "", `"abc-123"`},
		{"list revoked", []string{"revoked-tokens", "list"}, "", "", `"leaked"`},
		{"mint for unknown client", []string{"tokens", "mint", "--client", "ghost"}, apierr.ValidationFailed, "client_id", ""},
		{"delete client", []string{"clients", "delete", "app-1"}, "", "", ""},
		{"list after delete", []string{"clients", "list"}, "", "", "[]"},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, errOut, err := c.run(s.args...)
			if s.wantCode == "" {
				if err != nil {
					t.Fatalf("%v\nstderr: %s", err, errOut)
				}
				if !strings.Contains(out, s.wantStdout) {
					t.Fatalf("stdout %s lacks %s", out, s.wantStdout)
				}
				return
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Code != s.wantCode {
				t.Fatalf("err = %v, want API error %s", err, s.wantCode)
			}
			if !strings.HasPrefix(err.Error(), string(s.wantCode)+": ") {
				t.Fatalf("error prints as %q, want \"code: message\"", err.Error())
			}
			if s.wantField != "" && !strings.Contains(err.Error(), "\n  "+s.wantField+": ") {
				t.Fatalf("error %q does not list field %s", err.Error(), s.wantField)
			}
		})
	}
}

func TestUsageAndConfigErrors(t *testing.T) {
	tok := map[string]string{EnvAdminToken: "pca_x"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no command", nil, nil, "usage error"},
		{"unknown resource", []string{"widgets", "list"}, nil, "usage error"},
		{"unknown verb", []string{"tenants", "explode"}, nil, "usage error"},
		{"mint without client", []string{"tokens", "mint"}, nil, "--client is required"},
		{"revoke with bad time", []string{"tokens", "revoke", "--jti", "x", "--expires-at", "tomorrow"}, nil, "RFC 3339"},
		{"create without body", []string{"tenants", "create"}, tok, "JSON body is required"},
		{"update without body or field flag", []string{"tiers", "update", "t1"}, tok, "JSON body is required"},
		{"client without residency", []string{"clients", "create", "--json", `{"client_id":"a","tenant":"t","tier":"t"}`},
			tok, `--residency is required: name a residency rule, or "global"`},
		{"client residency twice", []string{"clients", "create", "--residency", "eu", "--json",
			`{"client_id":"a","tenant":"t","tier":"t","residency":"global"}`}, tok, "residency is given twice"},
		{"max choices not an integer", []string{"tiers", "update", "t1", "--max-choices", "four"}, tok, "want an integer"},
		{"no token file", []string{"--data-dir", "/nonexistent", "tenants", "list"}, nil, "no admin token"},
		{"token on the command line", []string{"--admin-token", "pca_secret", "tenants", "list"}, nil, "--admin-token is refused"},
		{"token flag with =", []string{"-admin-token=pca_secret", "tenants", "list"}, nil, "PORTCULLIS_ADMIN_TOKEN"},
		{"token flag after the command", []string{"tenants", "list", "--admin-token", "pca_secret"}, nil, "process listings"},
		{"bad admin url", []string{"tenants", "list"}, map[string]string{"PORTCULLIS_ADMIN_URL": "ftp://x", "PORTCULLIS_ADMIN_TOKEN": "pca_x"}, "must be an http(s) URL"},
		{"unreachable control plane", []string{"tenants", "list"}, map[string]string{"PORTCULLIS_ADMIN_URL": "http://127.0.0.1:1", "PORTCULLIS_ADMIN_TOKEN": "pca_secret"}, "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), tt.args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut},
				func(k string) string { return tt.env[k] })
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error()+out.String()+errOut.String(), "pca_secret") {
				t.Fatal("the admin token was printed")
			}
		})
	}
}

func decode(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

// TestAdminTokenOnlyFromTheEnvironmentOrAPrivateFile: --admin-token is a usage error
// (nothing is sent), and a token file that group or others can read is refused,
// naming the file.
func TestAdminTokenOnlyFromTheEnvironmentOrAPrivateFile(t *testing.T) {
	var out, errOut bytes.Buffer
	stdio := IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}
	err := Run(context.Background(), []string{"--admin-url", "http://127.0.0.1:1", "--admin-token", "pca_secret", "tenants", "list"},
		stdio, func(string) string { return "" })
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), EnvAdminToken) {
		t.Fatalf("err = %v, want a usage error pointing at %s", err, EnvAdminToken)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, AdminTokenFile)
	if err := os.WriteFile(path, []byte("pca_secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	err = Run(context.Background(), []string{"--admin-url", "http://127.0.0.1:1", "--data-dir", dir, "tenants", "list"},
		stdio, func(string) string { return "" })
	if !errors.Is(err, secretfile.ErrTooOpen) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "0644") {
		t.Fatalf("err = %v, want the token file refused for its mode", err)
	}
	if strings.Contains(err.Error()+out.String()+errOut.String(), "pca_secret") {
		t.Fatal("the admin token was printed")
	}
}
