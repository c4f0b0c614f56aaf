package app

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/console"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/health"
	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestConsoleTrafficUsageAndDeployments: with events archived through the store's
// archive path and worker health reports on NATS, the admin's overview shows each
// region's requests, error and refusal rates and latency, the top clients and an
// open breaker first; its live part is served alone for htmx; the usage page ranks
// clients by tokens and links a CSV the session may download; the deployments page
// shows the residency matrix and the breakers; a client's page lists its requests
// and mints a token once. A tenant admin sees its tenant's usage only, without the
// gateway's error rates or latency, and no deployments.
func TestConsoleTrafficUsageAndDeployments(t *testing.T) {
	const password = "pw-for-the-console-pages"
	idp, tweak := withOIDC(t, password)
	a, cfg := startApp(t, tweak)
	base := "http://" + a.Addr()
	idp.AllowRedirect(base + "/auth/callback")
	admin := admintest.Admin(t, base, cfg.DataDir)
	for _, r := range []struct{ path, body string }{
		{"/tenants", `{"name":"demo"}`},
		{"/tenants", `{"name":"globex"}`},
		{"/tiers", `{"name":"default","requests_per_minute":60,"tokens_per_hour":100000,"max_concurrent_requests":5,"allowed_models":["gpt-4o-mini"]}`},
		{"/residency-rules", `{"residency":"eu","allowed_regions":["eu"]}`},
		{"/providers", `{"name":"openai","kind":"openai"}`},
		{"/deployments", `{"name":"openai-eu","provider":"openai","region":"eu","base_url":"http://127.0.0.1:9100/v1","key_source":"none"}`},
		{"/deployments", `{"name":"openai-us","provider":"openai","region":"us","base_url":"http://127.0.0.1:9100/v1","key_source":"none"}`},
		{"/clients", `{"client_id":"demo-app","tenant":"demo","tier":"default","residency":"eu","enabled":true}`},
		{"/clients", `{"client_id":"globex-app","tenant":"globex","tier":"default","residency":"global","enabled":true}`},
	} {
		if res := do(t, http.MethodPost, base+"/admin/v1"+r.path, admin, r.body); res.status != http.StatusCreated {
			t.Fatalf("seed %s: %d %s", r.path, res.status, res.body)
		}
	}

	// 10 eu requests of demo-app (one 502, two 429), 3 us requests of globex-app.
	now := time.Now().UTC()
	event := func(region, id, client, tenant string, status int, latency, tokens int64) store.AuditEvent {
		e := audit.Event{V: audit.SchemaVersion, TS: now.Add(-time.Minute), RequestID: id, Region: region, Worker: region + "-1",
			ClientID: client, TenantID: tenant, Operation: "chat", Model: "gpt-4o-mini", Deployment: "openai-" + region,
			TokensIn: tokens, TokensOut: tokens, Status: status, LatencyMS: latency, CostUSDMicros: 1000,
			Flags: []audit.Flag{}, Headers: map[string]string{}}
		raw, err := chain.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		return store.AuditEvent{Event: e, JSON: raw}
	}
	var eu, us []store.AuditEvent
	for i := range 10 {
		status := 200
		switch i {
		case 0:
			status = 502
		case 1, 2:
			status = 429
		}
		eu = append(eu, event("eu", fmt.Sprintf("eu-%d", i), "demo-app", "demo", status, 40, 10))
	}
	for i := range 3 {
		us = append(us, event("us", fmt.Sprintf("us-%d", i), "globex-app", "globex", 200, 700, 500))
	}
	ctx := context.Background()
	if _, err := a.st.AppendAudit(ctx, "eu", eu); err != nil {
		t.Fatal(err)
	}
	if _, err := a.st.AppendAudit(ctx, "us", us); err != nil {
		t.Fatal(err)
	}

	// Health: openai-us's breaker is open on its worker.
	nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, r := range []health.Report{
		{Worker: "eu-1", Region: "eu", At: time.Now(), Deployments: []health.Deployment{{Name: "openai-eu", Breaker: "closed", Samples: 5}}},
		{Worker: "us-1", Region: "us", At: time.Now(), Deployments: []health.Deployment{{Name: "openai-us", Breaker: "open", ErrorRate: 1, Samples: 6}}},
	} {
		data, err := health.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(natsnames.HealthSubject(r.Region, r.Worker), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	// A refresh whose session has ended sends htmx to sign in, back to its page.
	req, _ := http.NewRequest(http.MethodGet, base+"/console/live/overview", nil)
	req.Header.Set("HX-Request", "true")
	req.Header.Set("HX-Current-URL", base+"/console/usage?group=model")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("HX-Redirect") != "/auth/login?return_to=%2Fconsole%2Fusage%3Fgroup%3Dmodel" {
		t.Fatalf("a signed-out refresh: %d %v", resp.StatusCode, resp.Header)
	}

	adm := signIn(t, base, "admin@demo.example", password)
	var overview httpResult
	waitfor.That(t, "both workers on the overview", func() bool {
		overview = adm.do(http.MethodGet, "/console/", "", "")
		return strings.Contains(overview.body, "2 workers reporting")
	})
	euRow := between(overview.body, `<tr id="region-eu">`, `</tr>`)
	usRow := between(overview.body, `<tr id="region-us">`, `</tr>`)
	if !strings.Contains(euRow, `<td class="requests">10</td>`) || !strings.Contains(euRow, `<td class="error-rate">10.00%</td>`) ||
		!strings.Contains(euRow, "<td>20.00%</td>") || !strings.Contains(euRow, `<td class="p50">38 ms</td>`) {
		t.Fatalf("eu's row: %s", euRow)
	}
	if !strings.Contains(usRow, `<td class="requests">3</td>`) || !strings.Contains(usRow, `<td class="p95">`) {
		t.Fatalf("us's row: %s", usRow)
	}
	top := between(overview.body, `<table id="top-clients"`, `</table>`)
	if !strings.Contains(top, "globex-app") || strings.Index(top, "globex-app") > strings.Index(top, "demo-app") {
		t.Fatalf("top clients, most tokens first: %s", top)
	}
	breakers := between(overview.body, `<table id="breakers">`, `</table>`)
	if !strings.Contains(breakers, `id="breaker-openai-us"`) || strings.Index(breakers, "openai-us") > strings.Index(breakers, "openai-eu") ||
		!strings.Contains(breakers, "state-open") {
		t.Fatalf("breakers, open first: %s", breakers)
	}
	if !strings.Contains(overview.body, `data-chart="`) || !strings.Contains(overview.body, `hx-get="/console/live/overview"`) {
		t.Fatalf("the overview's charts and live part: %s", overview.body)
	}
	live := adm.do(http.MethodGet, "/console/live/overview", "", "")
	if live.status != http.StatusOK || !strings.HasPrefix(live.body, `<section id="live"`) || strings.Contains(live.body, "<html") ||
		!strings.Contains(live.body, "openai-us") {
		t.Fatalf("the live part alone: %d %s", live.status, live.body)
	}
	if r := adm.do(http.MethodGet, "/console/live/traffic", "", ""); r.status != http.StatusOK || !strings.HasPrefix(r.body, `<section id="traffic"`) ||
		!strings.Contains(r.body, `<td class="requests">10</td>`) || strings.Contains(r.body, "<html") {
		t.Fatalf("the traffic alone: %d %s", r.status, r.body)
	}
	if r := adm.do(http.MethodGet, "/console/live/breakers", "", ""); r.status != http.StatusOK || !strings.HasPrefix(r.body, `<div id="breakers-live" hx-get=`) {
		t.Fatalf("the breakers alone: %d %s", r.status, r.body)
	}

	usage := adm.do(http.MethodGet, "/console/usage?group=client&range=7d", "", "")
	table := between(usage.body, `<table id="usage-table">`, `</table>`)
	if usage.status != http.StatusOK || strings.Index(table, "globex-app") > strings.Index(table, "demo-app") || !strings.Contains(usage.body, `<div class="n" id="total-requests">13</div>`) {
		t.Fatalf("usage by client: %d %s", usage.status, usage.body)
	}
	csvURL := strings.ReplaceAll(between(usage.body, `id="csv" href="`, `"`), "&amp;", "&")
	if !strings.HasPrefix(csvURL, "/admin/v1/usage?") {
		t.Fatalf("the CSV link: %q", csvURL)
	}
	csv := adm.do(http.MethodGet, csvURL, "", "")
	if csv.status != http.StatusOK || !strings.Contains(csv.header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(csv.body, "demo-app,10,") || !strings.Contains(csv.body, "globex-app,3,") {
		t.Fatalf("the CSV with the session: %d %v %s", csv.status, csv.header, csv.body)
	}
	if r := adm.do(http.MethodGet, "/console/usage?group=client&range=24h&key=globex", "", ""); strings.Contains(r.body, "demo-app") ||
		!strings.Contains(r.body, "Tokens per hour for globex-app") {
		t.Fatalf("usage searched: %s", r.body)
	}

	deps := adm.do(http.MethodGet, "/console/deployments", "", "")
	eurow := between(deps.body, `<tr id="residency-eu">`, `</tr>`)
	globalrow := between(deps.body, `<tr id="residency-global">`, `</tr>`)
	// Columns: clients, then openai-eu, openai-us (by region).
	if deps.status != http.StatusOK || strings.Count(eurow, `title="allowed"`) != 1 || strings.Count(eurow, `title="not allowed"`) != 1 ||
		strings.Index(eurow, `title="allowed"`) > strings.Index(eurow, `title="not allowed"`) || !strings.Contains(eurow, "<td>1</td>") {
		t.Fatalf("eu's residency row: %d %s", deps.status, eurow)
	}
	if strings.Count(globalrow, `title="allowed"`) != 2 || !strings.Contains(globalrow, "<td>1</td>") {
		t.Fatalf("global's residency row: %s", globalrow)
	}
	if !strings.Contains(deps.body, `<tr id="deployment-openai-us">`) || !strings.Contains(deps.body, `id="breaker-openai-us"`) {
		t.Fatalf("the deployments page: %s", deps.body)
	}

	// What the workers hold of demo-app's limits, as they write it to PC_LIMITS (the
	// next minute too, in case the page is read in it).
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	limitsKV, err := js.KeyValue(ctx, natsnames.LimitsBucket)
	if err != nil {
		t.Fatal(err)
	}
	minute := time.Now().UTC().Truncate(time.Minute)
	for _, kv := range []struct{ key, value string }{
		{natsnames.LimitsRequestsPrefix + "demo-app." + strconv.FormatInt(minute.Unix(), 10), "7"},
		{natsnames.LimitsRequestsPrefix + "demo-app." + strconv.FormatInt(minute.Add(time.Minute).Unix(), 10), "7"},
		{natsnames.LimitsConcurrencyPrefix + "demo-app", `{"v":1,"held":{"eu-1":2}}`},
	} {
		if _, err := limitsKV.Put(ctx, kv.key, []byte(kv.value)); err != nil {
			t.Fatal(err)
		}
	}

	client := adm.do(http.MethodGet, "/console/clients/demo-app", "", "")
	limits := between(client.body, `<table id="limits-now"`, `</table>`)
	if !strings.Contains(limits, `<td>Requests this minute</td><td class="held">7</td><td>60</td>`) ||
		!strings.Contains(limits, `<td>Concurrent requests</td><td class="held">2</td><td>5</td>`) || !strings.Contains(limits, "<div>eu-1: 2</div>") ||
		!strings.Contains(limits, `<td>Tokens this hour</td><td class="held">0</td><td>100,000</td>`) {
		t.Fatalf("demo-app's limits in use: %s", limits)
	}
	recent := between(client.body, `<table id="recent"`, `</table>`)
	if strings.Count(recent, "<tr>") != 11 || !strings.Contains(recent, "<code>upstream_error</code>") && !strings.Contains(recent, "502") {
		t.Fatalf("demo-app's requests: %s", recent)
	}
	if !strings.Contains(client.body, `id="tier-limits">60 requests/minute, 100,000 tokens/hour, 5 concurrent`) {
		t.Fatalf("demo-app's limits: %s", client.body)
	}
	minted := adm.form("/console/clients/demo-app/token", url.Values{"csrf": {adm.csrf}, "ttl_seconds": {"900"}})
	token := between(minted.body, `<textarea id="token-value" readonly rows="4" cols="80">`, `</textarea>`)
	if minted.status != http.StatusOK || strings.Count(token, ".") != 2 || minted.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("mint: %d %v %s", minted.status, minted.header, minted.body)
	}
	if again := adm.do(http.MethodGet, "/console/clients/demo-app", "", ""); strings.Contains(again.body, token) {
		t.Fatal("the minted token is shown again")
	}

	// A page's automatic refresh does not count as the person's use of the session:
	// an unattended page must not keep it from idling out.
	db, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	idle := func() time.Duration {
		var secs float64
		if err := db.QueryRow(ctx, `SELECT extract(epoch FROM now() - max(last_seen_at)) FROM admin_sessions
			WHERE principal = 'admin@demo.example'`).Scan(&secs); err != nil {
			t.Fatal(err)
		}
		return time.Duration(secs * float64(time.Second))
	}
	if _, err := db.Exec(ctx, `UPDATE admin_sessions SET last_seen_at = now() - interval '20 minutes' WHERE principal = 'admin@demo.example'`); err != nil {
		t.Fatal(err)
	}
	poll, _ := http.NewRequest(http.MethodGet, base+"/console/live/overview", nil)
	poll.Header.Set("HX-Request", "true")
	poll.Header.Set(console.PollHeader, "1")
	if resp, err := adm.b.Client.Do(poll); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a poll: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if d := idle(); d < 19*time.Minute {
		t.Fatalf("a poll marked the session used: idle %v", d)
	}
	if r := adm.do(http.MethodGet, "/console/alerts", "", ""); r.status != http.StatusOK || idle() > time.Minute {
		t.Fatalf("a page the person loaded did not mark the session used: %d, idle %v", r.status, idle())
	}

	// Alerts: 55 token spikes and a revoked key, in pages of 50, by kind.
	for i := range 55 {
		if _, _, err := a.st.RaiseAlert(ctx, store.Alert{Kind: "token_spike", Severity: "warning", ClientID: "demo-app", Rule: "spike",
			DedupKey: strconv.Itoa(i), Message: fmt.Sprintf("spike %d", i), Details: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := a.st.RaiseAlert(ctx, store.Alert{Kind: "key_revoked", Severity: "critical", Rule: "keys", DedupKey: "r",
		Message: "openai keys revoked", Details: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	first := adm.do(http.MethodGet, "/console/alerts?state=all", "", "")
	older := strings.ReplaceAll(between(first.body, `<a href="`, `" id="older">`), "&amp;", "&")
	older = older[strings.LastIndex(older, `"`)+1:]
	if strings.Count(first.body, `<tr id="alert-`) != 50 || !strings.Contains(first.body, "openai keys revoked") || !strings.HasPrefix(older, "/console/alerts?") {
		t.Fatalf("the first page of alerts (older %q): %s", older, first.body)
	}
	second := adm.do(http.MethodGet, older, "", "")
	if strings.Count(second.body, `<tr id="alert-`) != 6 || !strings.Contains(second.body, "spike 0<") || strings.Contains(second.body, `id="older"`) {
		t.Fatalf("the second page of alerts: %s", second.body)
	}
	if r := adm.do(http.MethodGet, "/console/alerts?state=all&kind=key_revoked", "", ""); strings.Count(r.body, `<tr id="alert-`) != 1 {
		t.Fatalf("the key_revoked alerts: %s", r.body)
	}
	if r := adm.do(http.MethodGet, "/console/live/overview", "", ""); !strings.Contains(r.body, `id="open-alerts">56</a>`) {
		t.Fatalf("the overview's open alerts: %s", r.body)
	}

	// The keys page's history and access log, for every deployment or one.
	v1, v2 := 1, 2
	if _, err := a.st.AddRotation(ctx, store.Rotation{Deployment: "openai-eu", Provider: "openai", Kind: "rotated", Trigger: store.TriggerManual,
		Actor: "admin@demo.example", Reason: "quarterly", OldVersion: &v1, NewVersion: &v2}); err != nil {
		t.Fatal(err)
	}
	for _, acc := range []keyevents.Access{
		{Version: keyevents.SchemaVersion, ID: "eu-1/1", At: now, ActorKind: "worker", ActorID: "eu-1", Region: "eu", Deployment: "openai-eu",
			Path: "secret/data/openai-eu", KeyVersion: 2, Reason: "rotated", OK: true},
		{Version: keyevents.SchemaVersion, ID: "us-1/1", At: now, ActorKind: "worker", ActorID: "us-1", Region: "us", Deployment: "openai-us",
			Path: "secret/data/openai-us", Reason: "startup", OK: false, Error: "permission denied"},
	} {
		if _, err := a.st.AddKeyAccess(ctx, acc); err != nil {
			t.Fatal(err)
		}
	}
	keys := adm.do(http.MethodGet, "/console/keys", "", "")
	history, access := between(keys.body, `<table id="key-history"`, `</table>`), between(keys.body, `<table id="key-access"`, `</table>`)
	if !strings.Contains(history, "v1 → v2") || !strings.Contains(history, "quarterly") ||
		!strings.Contains(access, "worker eu-1") || !strings.Contains(access, "permission denied") {
		t.Fatalf("the keys page's logs: %s", keys.body)
	}
	if r := adm.do(http.MethodGet, "/console/keys?deployment=openai-us", "", ""); strings.Contains(between(r.body, `<table id="key-access"`, `</table>`), "eu-1") ||
		strings.Contains(between(r.body, `<table id="key-history"`, `</table>`), "quarterly") {
		t.Fatalf("the keys page for openai-us: %s", r.body)
	}

	tadm := signIn(t, base, "tenant-admin@demo.example", password)
	tov := tadm.do(http.MethodGet, "/console/", "", "")
	if !strings.Contains(tov.body, `<tr id="region-eu">`) || strings.Contains(tov.body, `<tr id="region-us">`) ||
		strings.Contains(tov.body, "error-rate") || strings.Contains(tov.body, "globex-app") || strings.Contains(tov.body, `id="breakers"`) {
		t.Fatalf("the tenant admin's overview: %s", tov.body)
	}
	if r := tadm.do(http.MethodGet, "/console/usage?group=client", "", ""); strings.Contains(r.body, "globex-app") || !strings.Contains(r.body, "demo-app") {
		t.Fatalf("the tenant admin's usage: %s", r.body)
	}
	if r := tadm.do(http.MethodGet, "/console/deployments", "", ""); r.status != http.StatusForbidden {
		t.Fatalf("the tenant admin's deployments: %d", r.status)
	}
	if r := tadm.do(http.MethodGet, "/console/clients/globex-app", "", ""); r.status != http.StatusNotFound || strings.Contains(r.body, "us-0") {
		t.Fatalf("another tenant's client page: %d", r.status)
	}
	if r := tadm.form("/console/clients/globex-app/token", url.Values{"csrf": {tadm.csrf}}); r.status != http.StatusNotFound && r.status != http.StatusForbidden {
		t.Fatalf("a token for another tenant's client: %d %s", r.status, r.body)
	}
}
