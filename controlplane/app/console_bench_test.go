package app

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/audit"
)

// The console benchmark's scale: the 10k clients and 1M archived events.
// PORTCULLIS_CONSOLE_BENCH_EVENTS changes the number of events (e.g. for a quick
// run).
const (
	benchTenants = 100
	benchClients = 10_000
	benchEvents  = 1_000_000
	benchDays    = 30
)

// BenchmarkConsolePages times the console's pages, each a full request over
// loopback (so server time and a little client time), as an admin and as a tenant
// admin, against a control plane holding benchClients clients in benchTenants
// tenants and benchEvents audit events archived over the last benchDays days in
// two regions: archived through the store's real archive path (hash chain, usage
// and traffic rollups), so the pages read what production would hold.
//
//	go test ./controlplane/app -run '^$' -bench ConsolePages -benchtime 20x
func BenchmarkConsolePages(b *testing.B) {
	events := benchEvents
	if s := os.Getenv("PORTCULLIS_CONSOLE_BENCH_EVENTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("PORTCULLIS_CONSOLE_BENCH_EVENTS=%q: want a positive number", s)
		}
		events = n
	}
	const password = "pw-for-the-console-bench"
	idp, tweak := withOIDC(b, password)
	a, cfg := startApp(b, tweak)
	base := "http://" + a.Addr()
	idp.AllowRedirect(base + "/auth/callback")
	admin := admintest.Admin(b, base, cfg.DataDir)
	start := time.Now()
	seedConsoleBench(b, a.st, cfg.DatabaseURL, base, admin, events)
	b.Logf("seeded %d clients in %d tenants and %d audit events in %v", benchClients, benchTenants, events, time.Since(start).Round(time.Second))

	adm := signIn(b, base, "admin@demo.example", password)
	tadm := signIn(b, base, "tenant-admin@demo.example", password)
	pages := []struct {
		name string
		s    *session
		path string
	}{
		{"overview", adm, "/console/"},
		{"clients", adm, "/console/clients"},
		{"clients-search", adm, "/console/clients?q=client-0042"},
		{"clients-of-tenant", adm, "/console/clients?tenant=tenant-007&enabled=true"},
		{"client", adm, "/console/clients/client-04242"},
		{"tenants", adm, "/console/tenants"},
		{"deployments", adm, "/console/deployments"},
		{"keys", adm, "/console/keys"},
		{"alerts", adm, "/console/alerts?state=all"},
		{"usage-by-tenant-30d", adm, "/console/usage?group=tenant&range=30d"},
		{"usage-by-client-30d", adm, "/console/usage?group=client&range=30d"},
		{"usage-by-model-7d", adm, "/console/usage?group=model&range=7d"},
		{"audit", adm, "/console/audit"},
		{"changes", adm, "/console/changes"},
		{"tenant-admin-overview", tadm, "/console/"},
		{"tenant-admin-usage-30d", tadm, "/console/usage?group=client&range=30d"},
	}
	for _, p := range pages {
		if r := p.s.do(http.MethodGet, p.path, "", ""); r.status != http.StatusOK {
			b.Fatalf("%s: %d %.300s", p.path, r.status, r.body)
		}
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				if r := p.s.do(http.MethodGet, p.path, "", ""); r.status != http.StatusOK {
					b.Fatalf("%s: %d", p.path, r.status)
				}
			}
		})
	}
}

// seedConsoleBench fills the control plane: the policy through the admin API (so
// it is valid and published), the clients in one statement (10k API calls would
// only time the API), and the events through the archive in batches.
func seedConsoleBench(b *testing.B, st *store.Store, dbURL, base, admin string, events int) {
	b.Helper()
	for _, r := range []struct{ path, body string }{
		{"/tiers", `{"name":"default","requests_per_minute":600,"tokens_per_hour":1000000,"max_concurrent_requests":20,"allowed_models":["gpt-4o","gpt-4o-mini"]}`},
		{"/residency-rules", `{"residency":"eu","allowed_regions":["eu"]}`},
		{"/residency-rules", `{"residency":"us","allowed_regions":["us"]}`},
		{"/tenants", `{"name":"demo"}`},
	} {
		if res := do(b, http.MethodPost, base+"/admin/v1"+r.path, admin, r.body); res.status != http.StatusCreated {
			b.Fatalf("seed %s: %d %s", r.path, res.status, res.body)
		}
	}
	ctx := context.Background()
	pool, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close(ctx)
	if _, err := pool.Exec(ctx, `INSERT INTO tenants (name, display_name)
		SELECT format('tenant-%s', lpad(i::text, 3, '0')), format('Tenant %s', i) FROM generate_series(1, $1) i`, benchTenants-1); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO clients (client_id, tenant, tier, residency, enabled)
		SELECT format('client-%s', lpad(i::text, 5, '0')),
			CASE WHEN i % $2 = 0 THEN 'demo' ELSE format('tenant-%s', lpad((i % $2)::text, 3, '0')) END,
			'default', CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END, i % 17 <> 0
		FROM generate_series(0, $1 - 1) i`, benchClients, benchTenants); err != nil {
		b.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	models := []string{"gpt-4o", "gpt-4o-mini"}
	now := time.Now().UTC()
	from := now.Add(-benchDays * 24 * time.Hour)
	const batch = 10_000
	for _, region := range []string{"eu", "us"} {
		n := events / 2
		span := now.Sub(from)
		for i := 0; i < n; i += batch {
			evs := make([]store.AuditEvent, 0, batch)
			for j := i; j < min(i+batch, n); j++ {
				c := rng.IntN(benchClients)
				if region == "eu" {
					c -= c % 2
				} else {
					c |= 1
					c %= benchClients
				}
				tenant := fmt.Sprintf("tenant-%03d", c%benchTenants)
				if c%benchTenants == 0 {
					tenant = "demo"
				}
				e := audit.Event{V: audit.SchemaVersion, TS: from.Add(span * time.Duration(j) / time.Duration(n)),
					RequestID: fmt.Sprintf("%s-%07d", region, j), Region: region, Worker: region + "-1",
					ClientID: fmt.Sprintf("client-%05d", c), TenantID: tenant, Operation: "chat", Model: models[c%2],
					Provider: "openai", Deployment: "openai-" + region, PromptHash: "hmac-sha256:00", ResponseHash: "hmac-sha256:00",
					TokensIn: int64(20 + rng.IntN(2000)), TokensOut: int64(10 + rng.IntN(800)), Status: 200,
					LatencyMS: int64(5 + rng.ExpFloat64()*400), Flags: []audit.Flag{}, Headers: map[string]string{}, SourceNet: "10.0.0.0/24"}
				e.CostUSDMicros = e.TokensIn/4 + e.TokensOut
				switch x := rng.IntN(100); {
				case x < 2:
					e.Status, e.ErrorCode = 502, ptr("upstream_error")
				case x < 7:
					e.Status, e.ErrorCode, e.TokensIn, e.TokensOut, e.CostUSDMicros = 429, ptr("rate_limit_exceeded"), 0, 0, 0
				}
				raw, err := chain.Canonical(e)
				if err != nil {
					b.Fatal(err)
				}
				evs = append(evs, store.AuditEvent{Event: e, JSON: raw})
			}
			if _, err := st.AppendAudit(ctx, region, evs); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := range 40 {
		if _, _, err := st.RaiseAlert(ctx, store.Alert{Kind: "token_spike", Severity: "warning", ClientID: fmt.Sprintf("client-%05d", i*37),
			Rule: "bench", DedupKey: strconv.Itoa(i), Message: "tokens this hour are 6x the baseline", Details: []byte(`{}`)}); err != nil {
			b.Fatal(err)
		}
	}
}

func ptr[T any](v T) *T { return &v }
