package router_test

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/router"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

func snapshot() *policy.Snapshot {
	dep := func(name, region string, enabled bool) policy.Deployment {
		return policy.Deployment{Name: name, Provider: "openai", Region: region, Kind: policy.KindCloud,
			BaseURL: "http://127.0.0.1:1", KeySource: policy.KeySourceNone, TLS: policy.TLS{Verify: true}, Enabled: enabled}
	}
	model := func(name, deployment string) policy.Model {
		return policy.Model{ID: name + "@" + deployment, Name: name, Deployment: deployment, UpstreamModel: name + "-up"}
	}
	return &policy.Snapshot{
		SchemaVersion: policy.SchemaVersion, Version: 1,
		Tenants: []policy.Tenant{{Name: "t"}},
		Tiers:   []policy.Tier{{Name: "all", AllowedModels: []string{"m", "eu-only", "off"}, AllowedOperations: policy.Operations}},
		Clients: []policy.Client{
			{ClientID: "free", Tenant: "t", Tier: "all", Enabled: true},
			{ClientID: "eu", Tenant: "t", Tier: "all", Residency: "eu", Enabled: true},
			{ClientID: "apac", Tenant: "t", Tier: "all", Residency: "apac", Enabled: true},
			{ClientID: "norule", Tenant: "t", Tier: "all", Residency: "mars", Enabled: true},
		},
		Providers: []policy.Provider{{Name: "openai", Kind: policy.ProviderOpenAI}},
		Deployments: []policy.Deployment{
			dep("us-b", "us", true), dep("us-a", "us", true), dep("eu-b", "eu", true), dep("eu-a", "eu", true),
			dep("eu-off", "eu", false), dep("us-off", "us", false),
		},
		Models: []policy.Model{
			model("m", "us-b"), model("m", "eu-b"), model("m", "us-a"), model("m", "eu-a"), model("m", "eu-off"),
			model("eu-only", "eu-a"), model("off", "us-off"),
		},
		ResidencyRules: []policy.ResidencyRule{{Residency: "eu", AllowedRegions: []string{"eu"}}, {Residency: "apac", AllowedRegions: []string{"apac"}}},
	}
}

func TestCandidates(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name     string
		region   string // the worker's
		client   string
		model    string
		want     []string
		wantCode apierr.Code
	}{
		{name: "own region first, then the rest, each by name", region: "us", client: "free", model: "m", want: []string{"us-a", "us-b", "eu-a", "eu-b"}},
		{name: "same list from an eu worker", region: "eu", client: "free", model: "m", want: []string{"eu-a", "eu-b", "us-a", "us-b"}},
		{name: "eu residency on a us worker keeps only eu", region: "us", client: "eu", model: "m", want: []string{"eu-a", "eu-b"}},
		{name: "no deployment in an allowed region", region: "us", client: "apac", model: "m", wantCode: apierr.NoCompliantUpstream},
		{name: "served only from a forbidden region", region: "us", client: "apac", model: "eu-only", wantCode: apierr.NoCompliantUpstream},
		{name: "a residency without a rule allows nothing", region: "us", client: "norule", model: "m", wantCode: apierr.NoCompliantUpstream},
		{name: "every deployment disabled", region: "us", client: "free", model: "off", wantCode: apierr.UpstreamUnavailable},
		{name: "no deployment at all", region: "us", client: "free", model: "ghost", wantCode: apierr.ModelNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policycache.Compile(snapshot(), tt.region, log)
			client, ok := p.Client(tt.client)
			if !ok {
				t.Fatalf("client %s missing", tt.client)
			}
			routes, err := router.Candidates(p, client, tt.model)
			if tt.wantCode != "" {
				var e *apierr.Error
				if !errors.As(err, &e) || e.Code != tt.wantCode {
					t.Fatalf("Candidates error = %v, want %s", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("Candidates: %v", err)
			}
			var got []string
			for _, r := range routes {
				got = append(got, r.Deployment.Name)
				if r.UpstreamModel != tt.model+"-up" {
					t.Errorf("route %s upstream model = %q", r.Deployment.Name, r.UpstreamModel)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("candidates = %v, want %v", got, tt.want)
			}
		})
	}
}

// BenchmarkBalance measures ordering the candidates of one request: model "m" has two
// enabled deployments in each region, all healthy, with equal weights.
func BenchmarkBalance(b *testing.B) {
	s := snapshot()
	for i := range s.Models {
		s.Models[i].Weight = 1
	}
	p := policycache.Compile(s, "eu", slog.New(slog.NewTextHandler(io.Discard, nil)))
	client, _ := p.Client("free")
	routes, err := router.Candidates(p, client, "m")
	if err != nil || len(routes) != 4 {
		b.Fatalf("candidates: %d, %v", len(routes), err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := router.Balance(routes, 0.1); !ok {
			b.Fatal("no healthy candidate")
		}
	}
}
