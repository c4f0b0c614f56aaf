package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// seed creates one of each entity a client, model or fallback map can refer to.
func seed(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	must(st.Tenants().Create(ctx, policy.Tenant{Name: "acme", DisplayName: "Acme"}))
	must(st.Tiers().Create(ctx, policy.Tier{Name: "default", RequestsPerMinute: 60, TokensPerHour: 100000,
		MaxConcurrentRequests: 5, AllowedModels: []string{"gpt-4o-mini"}, AllowedOperations: policy.Operations}))
	must(st.ResidencyRules().Create(ctx, policy.ResidencyRule{Residency: "eu", AllowedRegions: []string{"eu"}}))
	must(st.Providers().Create(ctx, policy.Provider{Name: "openai", Kind: policy.ProviderOpenAI}))
	must(st.Deployments().Create(ctx, policy.Deployment{Name: "openai-eu", Provider: "openai", Region: "eu",
		Kind: policy.KindCloud, BaseURL: "http://127.0.0.1:9100/v1", KeySource: policy.KeySourceNone,
		TLS: policy.TLS{Verify: true}, TimeoutSeconds: 30, Retry: policy.Retry{MaxAttempts: 3, Backoff: "exponential"},
		CircuitBreaker: policy.CircuitBreaker{FailureThreshold: 5, ResetTimeoutSeconds: 60}, Enabled: true}))
}

func version(t *testing.T, st *store.Store) int64 {
	t.Helper()
	v, err := st.PolicyVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}
