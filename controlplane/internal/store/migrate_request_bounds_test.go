package store_test

import (
	"context"
	"errors"
	"io/fs"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
	"github.com/portcullis-gw/portcullis/migrations"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// migrateBefore applies, by hand, every migration whose name sorts before prefix and
// records it, as an older control plane would have; Migrate then applies the rest.
func migrateBefore(t *testing.T, conn *pgx.Conn, prefix string) {
	t.Helper()
	ctx := context.Background()
	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name >= prefix {
			break
		}
		sql, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, string(sql)); err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, strings.TrimSuffix(name, ".sql")); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRequestBoundsMigrationKeepsBehaviour applies 0011 over tiers, residency rules
// and clients stored before it: tiers get no caps, rules no endpoint, and a client
// without residency keeps none. The new columns then round-trip and their checks hold.
func TestRequestBoundsMigrationKeepsBehaviour(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	conn := connect(t, dbURL)
	migrateBefore(t, conn, "0011")
	for _, sql := range []string{
		`INSERT INTO tenants (name) VALUES ('acme')`,
		`INSERT INTO tiers (name, requests_per_minute, tokens_per_hour, max_concurrent_requests, default_max_tokens)
			VALUES ('old', 10, 1000, 1, 512)`,
		`INSERT INTO residency_rules (residency, allowed_regions) VALUES ('eu', '{eu}')`,
		`INSERT INTO clients (client_id, tenant, tier, residency) VALUES ('anywhere', 'acme', 'old', NULL), ('eu-app', 'acme', 'old', 'eu')`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Validate(); err != nil {
		t.Fatalf("snapshot after 0011 is invalid: %v", err)
	}
	if tier := snap.Tiers[0]; tier.MaxChoices != 0 || tier.MaxOutputTokens != 0 || tier.DefaultMaxTokens != 512 {
		t.Errorf("tier after 0011 = %+v, want no caps and its default_max_tokens", tier)
	}
	if rule := snap.ResidencyRules[0]; rule.EndpointURL != "" {
		t.Errorf("residency rule after 0011 = %+v, want no endpoint", rule)
	}
	residency := map[string]string{}
	for _, c := range snap.Clients {
		residency[c.ClientID] = c.Residency
	}
	if residency["anywhere"] != "" || residency["eu-app"] != "eu" {
		t.Errorf("client residencies after 0011 = %v", residency)
	}

	// The new columns round-trip through the store.
	tier, err := st.Tiers().Update(ctx, "old", 0, policy.Tier{RequestsPerMinute: 10, TokensPerHour: 1000, MaxConcurrentRequests: 1,
		DefaultMaxTokens: 512, MaxChoices: 4, MaxOutputTokens: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if tier.Entity.MaxChoices != 4 || tier.Entity.MaxOutputTokens != 2048 {
		t.Errorf("updated tier = %+v", tier.Entity)
	}
	rule, err := st.ResidencyRules().Update(ctx, "eu", 0, policy.ResidencyRule{AllowedRegions: []string{"eu"}, EndpointURL: "https://eu.gateway.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.ResidencyRules().Get(ctx, "eu"); err != nil || got.Entity.EndpointURL != "https://eu.gateway.example.com" {
		t.Errorf("residency rule eu = %+v, %v (after update %+v)", got.Entity, err, rule.Entity)
	}

	// The database refuses what the admin API refuses.
	before := version(t, st)
	for name, write := range map[string]func() error{
		"max_choices over 128": func() error {
			_, err := st.Tiers().Create(ctx, policy.Tier{Name: "t1", RequestsPerMinute: 1, TokensPerHour: 1, MaxConcurrentRequests: 1, MaxChoices: 129})
			return err
		},
		"negative max_output_tokens": func() error {
			_, err := st.Tiers().Create(ctx, policy.Tier{Name: "t2", RequestsPerMinute: 1, TokensPerHour: 1, MaxConcurrentRequests: 1, MaxOutputTokens: -1})
			return err
		},
		"default_max_tokens over max_output_tokens": func() error {
			_, err := st.Tiers().Create(ctx, policy.Tier{Name: "t3", RequestsPerMinute: 1, TokensPerHour: 1, MaxConcurrentRequests: 1,
				DefaultMaxTokens: 2048, MaxOutputTokens: 1024})
			return err
		},
		"residency rule named global": func() error {
			_, err := st.ResidencyRules().Create(ctx, policy.ResidencyRule{Residency: policy.ResidencyGlobal, AllowedRegions: []string{"eu"}})
			return err
		},
	} {
		if err := write(); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if v := version(t, st); v != before {
		t.Errorf("refused writes moved the policy version from %d to %d", before, v)
	}
}

// TestRequestBoundsMigrationRefusesARuleNamedGlobal: a database that has a residency
// rule named "global" is not migrated (the name now means no restriction), and the
// error says what to do.
func TestRequestBoundsMigrationRefusesARuleNamedGlobal(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	conn := connect(t, dbURL)
	migrateBefore(t, conn, "0011")
	if _, err := conn.Exec(ctx, `INSERT INTO residency_rules (residency, allowed_regions) VALUES ('global', '{eu,us}')`); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.Migrate(ctx)
	if err == nil || !strings.Contains(err.Error(), `residency rule "global" exists`) || !strings.Contains(err.Error(), "0011_request_bounds") {
		t.Fatalf("migrate = %v, want 0011 refused because of the rule named global", err)
	}
	var applied bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = '0011_request_bounds')`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied {
		t.Error("0011 is recorded as applied")
	}
}
