package store_test

import (
	"context"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
	"github.com/portcullis-gw/portcullis/migrations"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// TestMigrationKeepsEveryTiersOperations applies the migrations before 0009 by hand,
// stores tiers written in the old vocabulary ("completion" was only the legacy
// endpoint, "chat" also covered /v1/messages), then lets Migrate apply 0009: every
// tier must allow exactly the request operations it allowed before.
func TestMigrationKeepsEveryTiersOperations(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	conn := connect(t, dbURL)

	names, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if name >= "0009" {
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

	// Old meaning: what each request operation a tier allowed before 0009.
	cases := []struct {
		name string
		old  []string // stored before 0009
		want []string // stored after
		ops  []string // request operations allowed, before and after
	}{
		{name: "legacy-completion", old: []string{"completion"}, want: []string{"text_completion"},
			ops: []string{policy.OpTextCompletion}},
		{name: "chat-only", old: []string{"chat"}, want: []string{"chat", "messages"},
			ops: []string{policy.OpChat, policy.OpMessages}},
		{name: "everything", old: []string{"chat", "completion", "embeddings"}, want: []string{"completion", "embeddings"},
			ops: []string{policy.OpChat, policy.OpTextCompletion, policy.OpMessages, policy.OpEmbeddings}},
		{name: "chat-and-legacy", old: []string{"completion", "chat"}, want: []string{"completion"},
			ops: []string{policy.OpChat, policy.OpTextCompletion, policy.OpMessages}},
		{name: "embeddings-only", old: []string{"embeddings"}, want: []string{"embeddings"},
			ops: []string{policy.OpEmbeddings}},
		{name: "nothing", old: []string{}, want: []string{}, ops: []string{}},
	}
	for _, tc := range cases {
		if _, err := conn.Exec(ctx, `INSERT INTO tiers (name, requests_per_minute, tokens_per_hour, max_concurrent_requests, allowed_models, allowed_operations)
			VALUES ($1, 10, 1000, 1, '{}', $2)`, tc.name, tc.old); err != nil {
			t.Fatalf("insert tier %s: %v", tc.name, err)
		}
	}

	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before := version(t, st)
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if v := version(t, st); v != before+1 {
		t.Errorf("policy version after 0009 = %d, want %d (bumped once, so the rewritten tiers are published)", v, before+1)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tier, err := st.Tiers().Get(ctx, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tier.Entity.AllowedOperations, tc.want) {
				t.Errorf("allowed_operations = %q, want %q", tier.Entity.AllowedOperations, tc.want)
			}
			got := policy.RequestOperations(tier.Entity.AllowedOperations)
			slices.Sort(got)
			want := slices.Clone(tc.ops)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("request operations = %q, want %q (the tier's meaning changed)", got, want)
			}
		})
	}
}
