package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

func TestMutationsBumpVersionOnceAndShowInSnapshot(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	seed(t, st)

	tests := []struct {
		name   string
		mutate func() error
		check  func(*policy.Snapshot) bool
	}{
		{"create client", func() error {
			_, err := st.Clients().Create(ctx, policy.Client{ClientID: "App-1", Tenant: "acme", Tier: "default", Residency: "eu", Enabled: true})
			return err
		}, func(s *policy.Snapshot) bool {
			return slices.Contains(s.Clients, policy.Client{ClientID: "App-1", Tenant: "acme", Tier: "default", Residency: "eu", Enabled: true})
		}},
		{"update client", func() error {
			_, err := st.Clients().Update(ctx, "App-1", 0, policy.Client{Tenant: "acme", Tier: "default", Enabled: false})
			return err
		}, func(s *policy.Snapshot) bool {
			return slices.Contains(s.Clients, policy.Client{ClientID: "App-1", Tenant: "acme", Tier: "default", Enabled: false})
		}},
		{"create model", func() error {
			_, err := st.Models().Create(ctx, policy.Model{ID: "m1", Name: "gpt-4o", Deployment: "openai-eu", UpstreamModel: "gpt-4o", InputUSDPer1M: 2.5, OutputUSDPer1M: 10})
			return err
		}, func(s *policy.Snapshot) bool {
			return slices.Contains(s.Models, policy.Model{ID: "m1", Name: "gpt-4o", Deployment: "openai-eu", UpstreamModel: "gpt-4o", InputUSDPer1M: 2.5, OutputUSDPer1M: 10})
		}},
		{"revoke token", func() error {
			_, err := st.RevokedTokens().Create(ctx, policy.RevokedToken{JTI: "j1", ExpiresAt: time.Now().Add(time.Hour), Reason: "leaked"})
			return err
		}, func(s *policy.Snapshot) bool { return len(s.RevokedTokens) == 1 && s.RevokedTokens[0].JTI == "j1" }},
		{"delete client", func() error { return st.Clients().Delete(ctx, "App-1", 0) },
			func(s *policy.Snapshot) bool { return len(s.Clients) == 0 }},
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
				t.Errorf("snapshot does not show the change: %+v", snap)
			}
			if err := snap.Validate(); err != nil {
				t.Errorf("snapshot invalid: %v", err)
			}
		})
	}
}

func TestRefusedWritesAreTypedAndBumpNothing(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	seed(t, st)
	if _, err := st.Clients().Create(ctx, policy.Client{ClientID: "c1", Tenant: "acme", Tier: "default", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Models().Create(ctx, policy.Model{ID: "a", Name: "dup", Deployment: "openai-eu", UpstreamModel: "x"}); err != nil {
		t.Fatal(err)
	}
	tier, err := st.Tiers().Get(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		write func() error
		is    func(error) bool
	}{
		{"duplicate key", func() error {
			_, err := st.Tenants().Create(ctx, policy.Tenant{Name: "acme"})
			return err
		}, func(err error) bool {
			d, ok := errors.AsType[*store.DuplicateError](err)
			return ok && slices.Equal(d.Fields, []string{"name"})
		}},
		{"duplicate natural key", func() error {
			_, err := st.Models().Create(ctx, policy.Model{ID: "b", Name: "dup", Deployment: "openai-eu", UpstreamModel: "x"})
			return err
		}, func(err error) bool {
			d, ok := errors.AsType[*store.DuplicateError](err)
			return ok && slices.Equal(d.Fields, []string{"name", "deployment"})
		}},
		{"missing reference", func() error {
			_, err := st.Clients().Create(ctx, policy.Client{ClientID: "c2", Tenant: "acme", Tier: "gold"})
			return err
		}, func(err error) bool {
			r, ok := errors.AsType[*store.ReferenceError](err)
			return ok && r.Field == "tier"
		}},
		{"delete referenced", func() error { return st.Tiers().Delete(ctx, "default", 0) }, func(err error) bool {
			u, ok := errors.AsType[*store.InUseError](err)
			return ok && u.By == "clients"
		}},
		{"stale update", func() error {
			_, err := st.Tiers().Update(ctx, "default", tier.Revision+1, tier.Entity)
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrStale) }},
		{"stale delete", func() error { return st.Clients().Delete(ctx, "c1", 99) },
			func(err error) bool { return errors.Is(err, store.ErrStale) }},
		{"update missing", func() error {
			_, err := st.Tenants().Update(ctx, "nobody", 0, policy.Tenant{})
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrNotFound) }},
		{"delete missing", func() error { return st.Tenants().Delete(ctx, "nobody", 0) },
			func(err error) bool { return errors.Is(err, store.ErrNotFound) }},
		{"check constraint", func() error {
			_, err := st.Providers().Create(ctx, policy.Provider{Name: "p", Kind: "cohere"})
			return err
		}, func(err error) bool { return errors.Is(err, store.ErrInvalid) }},
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
}

func TestListWalksEveryEntityOnceInNaturalKeyOrder(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	seed(t, st)
	var want [][2]string
	for i := range 23 {
		name := fmt.Sprintf("model-%02d", 22-i) // inserted in reverse to prove ordering
		if _, err := st.Models().Create(ctx, policy.Model{Name: name, Deployment: "openai-eu", UpstreamModel: "x"}); err != nil {
			t.Fatal(err)
		}
		want = append(want, [2]string{fmt.Sprintf("model-%02d", i), "openai-eu"})
	}
	for _, limit := range []int{1, 5, 23, 100} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var got [][2]string
			cursor := ""
			for pages := 0; ; pages++ {
				if pages > 30 {
					t.Fatal("pagination does not end")
				}
				page, err := st.Models().List(ctx, cursor, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(page.Items) > limit {
					t.Fatalf("page of %d items, limit %d", len(page.Items), limit)
				}
				for _, r := range page.Items {
					got = append(got, [2]string{r.Entity.Name, r.Entity.Deployment})
				}
				if page.Next == "" {
					break
				}
				cursor = page.Next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("walked %v, want %v", got, want)
			}
		})
	}
	if _, err := st.Models().List(ctx, "not-a-cursor", 5); !errors.Is(err, store.ErrBadCursor) {
		t.Fatalf("bad cursor: got %v", err)
	}
}

func TestSnapshotLeavesOutExpiredRevocations(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	for jti, exp := range map[string]time.Duration{"live": time.Hour, "expired": -time.Hour} {
		if _, err := st.RevokedTokens().Create(ctx, policy.RevokedToken{JTI: jti, ExpiresAt: time.Now().Add(exp)}); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.RevokedTokens) != 1 || snap.RevokedTokens[0].JTI != "live" {
		t.Fatalf("revoked tokens in snapshot: %+v", snap.RevokedTokens)
	}
	if snap.SchemaVersion != policy.SchemaVersion || snap.GeneratedAt.IsZero() {
		t.Fatalf("snapshot header: %+v", snap)
	}
}

// TestListFiltered: (and Count) a search matches part of the key in any case, with LIKE's
// wildcards taken literally; equality filters narrow by a column; pages of a
// filtered list walk it whole; an unknown column is refused.
func TestListFiltered(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	seed(t, st)
	if _, err := st.Tenants().Create(ctx, policy.Tenant{Name: "globex"}); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"Billing-API", "billing_worker", "billingXworker", "search-app", "reports"} {
		tenant := "acme"
		if i%2 == 1 {
			tenant = "globex"
		}
		if _, err := st.Clients().Create(ctx, policy.Client{ClientID: id, Tenant: tenant, Tier: "default", Residency: "eu", Enabled: i != 3}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(f store.Filter, limit int) []string {
		t.Helper()
		var out []string
		for cursor := ""; ; {
			page, err := st.Clients().ListFiltered(ctx, cursor, limit, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page.Items {
				out = append(out, r.Entity.ClientID)
			}
			if cursor = page.Next; cursor == "" {
				slices.Sort(out) // the database's collation orders the pages
				return out
			}
		}
	}
	for _, tc := range []struct {
		f    store.Filter
		want string
	}{
		{store.Filter{Search: "BILLING"}, "Billing-API billingXworker billing_worker"},
		{store.Filter{Search: "billing_"}, "billing_worker"},
		{store.Filter{Search: "%"}, ""},
		{store.Filter{Equals: map[string]string{"tenant": "globex"}}, "billing_worker search-app"},
		{store.Filter{Search: "a", Equals: map[string]string{"enabled": "false"}}, "search-app"},
	} {
		for _, limit := range []int{1, 10} {
			if got := strings.Join(ids(tc.f, limit), " "); got != tc.want {
				t.Errorf("%+v (pages of %d): %q, want %q", tc.f, limit, got, tc.want)
			}
		}
		if n, err := st.Clients().Count(ctx, tc.f); err != nil || n != len(strings.Fields(tc.want)) {
			t.Errorf("count %+v: %d %v", tc.f, n, err)
		}
	}
	if _, err := st.Clients().ListFiltered(ctx, "", 10, store.Filter{Equals: map[string]string{"1=1; --": "x"}}); err == nil {
		t.Fatal("a filter on a column that does not exist was taken")
	}
}

// TestChangesNewestFirst: the change history lists newest first from a seq down,
// a page at a time, and names the resources it holds.
func TestChangesNewestFirst(t *testing.T) {
	ctx := context.Background()
	st, _ := storetest.Open(t)
	for i := range 5 {
		if _, err := st.Tenants().Create(ctx, policy.Tenant{Name: fmt.Sprintf("t%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	var seqs []int64
	for before := int64(0); ; {
		page, err := st.Changes(ctx, store.ChangeFilter{Resource: "tenants", Newest: true, BeforeSeq: before, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			seqs = append(seqs, r.Seq)
		}
		if len(page) < 2 {
			break
		}
		before = page[len(page)-1].Seq
	}
	if len(seqs) != 5 || !slices.IsSortedFunc(seqs, func(a, b int64) int { return int(b - a) }) {
		t.Fatalf("newest first, by pages of 2: %v", seqs)
	}
	if res, err := st.ChangeResources(ctx); err != nil || !slices.Contains(res, "tenants") {
		t.Fatalf("resources %v %v", res, err)
	}
}
