package store_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// seedClients creates clients with the given ids on top of seed.
func seedClients(t *testing.T, st *store.Store, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := st.Clients().Create(context.Background(), policy.Client{ClientID: id, Tenant: "acme", Tier: "default", Enabled: true}); err != nil {
			t.Fatalf("create client %s: %v", id, err)
		}
	}
}

func overrideClients(s *policy.Snapshot) []string {
	var ids []string
	for _, o := range s.LimitOverrides {
		ids = append(ids, o.ClientID)
	}
	return ids
}

func TestLimitOverrideWritesBumpVersionAndShowInSnapshot(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	seed(t, st)
	seedClients(t, st, "zeta", "Alpha", "mid")
	in := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)

	tests := []struct {
		name   string
		mutate func() error
		check  func(*policy.Snapshot) bool
	}{
		{"put new", func() error {
			rec, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{ClientID: "zeta", RequestsPerMinute: 5, ExpiresAt: in, Reason: "spike", SetBy: "admin"})
			if err == nil && rec.Revision != 1 {
				t.Errorf("revision %d after create, want 1", rec.Revision)
			}
			return err
		}, func(s *policy.Snapshot) bool {
			return slices.Equal(s.LimitOverrides, []policy.LimitOverride{
				{ClientID: "zeta", RequestsPerMinute: 5, ExpiresAt: in, Reason: "spike", SetBy: "admin"}})
		}},
		{"put replaces", func() error {
			rec, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{ClientID: "zeta", TokensPerHour: 1000, MaxConcurrentRequests: 2, ExpiresAt: in, Reason: "raise", SetBy: "admin"})
			if err == nil && (rec.Revision != 2 || !rec.CreatedAt.Before(rec.UpdatedAt)) {
				t.Errorf("after replace: revision %d, created %v, updated %v", rec.Revision, rec.CreatedAt, rec.UpdatedAt)
			}
			return err
		}, func(s *policy.Snapshot) bool {
			// The replaced override's requests_per_minute is gone: a replace is whole.
			return slices.Equal(s.LimitOverrides, []policy.LimitOverride{
				{ClientID: "zeta", TokensPerHour: 1000, MaxConcurrentRequests: 2, ExpiresAt: in, Reason: "raise", SetBy: "admin"}})
		}},
		{"second client sorts first", func() error {
			_, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{ClientID: "Alpha", RequestsPerMinute: 1, ExpiresAt: in, Reason: "r"})
			return err
		}, func(s *policy.Snapshot) bool { return slices.Equal(overrideClients(s), []string{"Alpha", "zeta"}) }},
		{"expired one is left out", func() error {
			_, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{ClientID: "mid", RequestsPerMinute: 1, ExpiresAt: time.Now().Add(-time.Second), Reason: "r"})
			return err
		}, func(s *policy.Snapshot) bool { return slices.Equal(overrideClients(s), []string{"Alpha", "zeta"}) }},
		{"delete", func() error { return st.LimitOverrides().Delete(ctx, "zeta", 0) },
			func(s *policy.Snapshot) bool { return slices.Equal(overrideClients(s), []string{"Alpha"}) }},
		{"deleting the client cascades", func() error { return st.Clients().Delete(ctx, "Alpha", 0) },
			func(s *policy.Snapshot) bool { return len(s.LimitOverrides) == 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := version(t, st)
			if err := tc.mutate(); err != nil {
				t.Fatalf("mutate: %v", err)
			}
			snap, err := st.Snapshot(ctx)
			if err != nil {
				t.Fatalf("snapshot: %v", err)
			}
			if snap.Version != before+1 {
				t.Errorf("version %d after one mutation from %d", snap.Version, before)
			}
			if !tc.check(snap) {
				t.Errorf("snapshot does not show the change: %+v", snap.LimitOverrides)
			}
			if err := snap.Validate(); err != nil {
				t.Errorf("snapshot invalid: %v", err)
			}
		})
	}
}

func TestDeletingAClientDeletesItsOverride(t *testing.T) {
	ctx := context.Background()
	st, dbURL := storetest.Open(t)
	seed(t, st)
	seedClients(t, st, "app")
	if _, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{ClientID: "app", RequestsPerMinute: 1, ExpiresAt: time.Now().Add(time.Hour), Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	before := version(t, st)
	if err := st.Clients().Delete(ctx, "app", 0); err != nil {
		t.Fatalf("delete a client with an override: %v", err)
	}
	if v := version(t, st); v != before+1 {
		t.Errorf("version %d after deleting the client, want %d", v, before+1)
	}
	var rows int
	if err := connect(t, dbURL).QueryRow(ctx, `SELECT count(*) FROM limit_overrides`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Fatalf("%d override rows left after their client was deleted", rows)
	}
	// A new client of the same name starts without the old override.
	seedClients(t, st, "app")
	if _, err := st.LimitOverrides().Get(ctx, "app"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("override of the re-created client: %v", err)
	}
}

func TestExpiredOverrideIsInvisibleAndReplacedAsNew(t *testing.T) {
	ctx := context.Background()
	st, dbURL := storetest.Open(t)
	seed(t, st)
	seedClients(t, st, "live", "gone")
	ov := st.LimitOverrides()
	if _, err := ov.Put(ctx, policy.LimitOverride{ClientID: "live", RequestsPerMinute: 7, ExpiresAt: time.Now().Add(time.Hour), Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	// Two writes, so that the expired row's revision is 2.
	for range 2 {
		if _, err := ov.Put(ctx, policy.LimitOverride{ClientID: "gone", RequestsPerMinute: 7, ExpiresAt: time.Now().Add(-time.Minute), Reason: "r"}); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		read  func() error
		moves bool // whether the call may move the policy version
	}{
		{"get", func() error { _, err := ov.Get(ctx, "gone"); return err }, false},
		{"update", func() error {
			_, err := ov.Update(ctx, "gone", 0, policy.LimitOverride{RequestsPerMinute: 1, ExpiresAt: time.Now().Add(time.Hour)})
			return err
		}, false},
		{"delete", func() error { return ov.Delete(ctx, "gone", 0) }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := version(t, st)
			if err := tc.read(); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("got %v, want ErrNotFound", err)
			}
			if v := version(t, st); v != before {
				t.Errorf("version moved from %d to %d", before, v)
			}
		})
	}
	page, err := ov.List(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 || page.Items[0].Entity.ClientID != "live" || page.Items[0].Entity.RequestsPerMinute != 7 {
		t.Fatalf("list = %+v, want only the live override", page.Items)
	}

	var oldCreated time.Time
	if err := connect(t, dbURL).QueryRow(ctx, `SELECT created_at FROM limit_overrides WHERE client_id = 'gone'`).Scan(&oldCreated); err != nil {
		t.Fatal(err)
	}
	rec, err := ov.Put(ctx, policy.LimitOverride{ClientID: "gone", TokensPerHour: 9, ExpiresAt: time.Now().Add(time.Hour), Reason: "again"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Revision != 1 || !rec.CreatedAt.After(oldCreated) {
		t.Fatalf("replacing an expired override: revision %d, created_at %v (old %v); want a new override", rec.Revision, rec.CreatedAt, oldCreated)
	}
	if got, err := ov.Get(ctx, "gone"); err != nil || got.Entity.TokensPerHour != 9 || got.Entity.RequestsPerMinute != 0 {
		t.Fatalf("get after replacing: %+v, %v", got, err)
	}
}

func TestLimitOverrideRefusedWritesAreTypedAndBumpNothing(t *testing.T) {
	ctx := context.Background()
	st, dbURL := storetest.Open(t)
	seed(t, st)
	seedClients(t, st, "app")
	in := time.Now().Add(time.Hour)
	if _, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{ClientID: "app", TokensPerHour: 5, ExpiresAt: in, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	// Limits left at zero are stored as NULL: "keep the tier's".
	var nulls int
	if err := connect(t, dbURL).QueryRow(ctx, `SELECT num_nulls(requests_per_minute, tokens_per_hour, max_concurrent_requests)
		FROM limit_overrides WHERE client_id = 'app'`).Scan(&nulls); err != nil {
		t.Fatal(err)
	}
	if nulls != 2 {
		t.Fatalf("%d NULL limits, want 2", nulls)
	}

	tests := []struct {
		name  string
		write func() error
		is    func(error) bool
	}{
		{"unknown client", func() error {
			_, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{ClientID: "ghost", RequestsPerMinute: 1, ExpiresAt: in})
			return err
		}, func(err error) bool {
			r, ok := errors.AsType[*store.ReferenceError](err)
			return ok && r.Field == "client_id"
		}},
		{"no limit at all", func() error {
			_, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{ClientID: "app", ExpiresAt: in})
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrInvalid) }},
		{"negative limit", func() error {
			_, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{ClientID: "app", RequestsPerMinute: -1, ExpiresAt: in})
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrInvalid) }},
		{"empty key", func() error {
			_, err := st.LimitOverrides().Put(ctx, policy.LimitOverride{RequestsPerMinute: 1, ExpiresAt: in})
			return err
		}, func(err error) bool { return err != nil }},
		{"delete missing", func() error { return st.LimitOverrides().Delete(ctx, "nobody", 0) },
			func(err error) bool { return errors.Is(err, store.ErrNotFound) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := version(t, st)
			err := tc.write()
			if err == nil || !tc.is(err) {
				t.Fatalf("got error %v", err)
			}
			if v := version(t, st); v != before {
				t.Errorf("a refused write moved the version from %d to %d", before, v)
			}
		})
	}
	if got, err := st.LimitOverrides().Get(ctx, "app"); err != nil || got.Entity.TokensPerHour != 5 || got.Revision != 1 {
		t.Fatalf("refused writes changed the override: %+v, %v", got, err)
	}
}
