package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// eval evaluates a JavaScript expression in the page, awaiting the promise it may
// return, failing the test with what it was doing.
func eval[T any](b *browser, what, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitJS waits, at most within, until the expression is true in the page.
func (b *browser) waitJS(what, expr string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out after %v waiting for %s (last error: %v)", within, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// capture is a PNG of the whole page when screenshots are asked for, else nil.
func (b *browser) capture(name string) []byte {
	b.t.Helper()
	if os.Getenv("PORTCULLIS_CONSOLE_SCREENSHOTS") == "" {
		return nil
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	return png
}

// finalShots are screenshots to write when every test of the run has ended, over
// any of the same name a test wrote meanwhile: TestConsoleInChromium's overview and
// client pages are taken before the archive has their traffic, and tests run in
// any order.
var finalShots struct {
	sync.Mutex
	png map[string][]byte
}

// shotAtEnd keeps png to be written as name.png to $PORTCULLIS_CONSOLE_SCREENSHOTS
// when the run ends, if the test passes.
func shotAtEnd(t *testing.T, name string, png []byte) {
	if png == nil {
		return
	}
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		finalShots.Lock()
		defer finalShots.Unlock()
		if finalShots.png == nil {
			finalShots.png = map[string][]byte{}
		}
		finalShots.png[name] = png
	})
}

// TestMain runs the tests, then writes the screenshots kept by shotAtEnd.
func TestMain(m *testing.M) {
	code := m.Run()
	if dir := os.Getenv("PORTCULLIS_CONSOLE_SCREENSHOTS"); dir != "" {
		finalShots.Lock()
		for name, png := range finalShots.png {
			if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "screenshot %s: %v\n", name, err)
				code = 1
			}
		}
		finalShots.Unlock()
	}
	os.Exit(code)
}

// TestConsoleTenantAdminInChromium: the demo tenant's admin, in Chromium, sees its
// own tenant's clients only and no section it may not read; requests forged from
// its page with its session's CSRF token against another tenant's client, or to
// create a tenant, are refused, and change nothing.
func TestConsoleTenantAdminInChromium(t *testing.T) {
	t.Parallel()
	const password = "console-tenant-admin-password"
	s := startStack(t, withOIDC(password))
	s.seed(t)
	s.mustAdmin(t, http.StatusCreated, http.MethodPost, "/tenants", map[string]any{"name": "initrode", "display_name": "Initrode"})
	s.mustAdmin(t, http.StatusCreated, http.MethodPost, "/clients", map[string]any{"client_id": "rival-app", "tenant": "initrode", "tier": "default", "residency": "eu"})
	status, h := s.admin(t, http.MethodGet, "/clients/rival-app", nil, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /clients/rival-app = %d", status)
	}
	revision := strings.Trim(strings.TrimPrefix(h.Get("ETag"), "W/"), `"`)
	if _, err := strconv.ParseInt(revision, 10, 64); err != nil {
		t.Fatalf("rival-app's ETag %q", h.Get("ETag"))
	}
	base := s.adminURL

	b := newBrowser(t)
	b.signIn(base, "/console/clients", "tenant-admin@demo.example", password)
	b.do("the client list", chromedp.WaitVisible(chromedp.CSS("#client-rows")))
	rows := b.text("#client-rows")
	for _, id := range []string{"eu-app", "global-app", "analytics-svc"} {
		if !strings.Contains(rows, id) {
			t.Errorf("the tenant admin's client list lacks its tenant's %s: %q", id, rows)
		}
	}
	if strings.Contains(rows, "rival-app") || strings.Contains(rows, "initrode") {
		t.Errorf("the tenant admin's client list shows another tenant's client: %q", rows)
	}
	if n := eval[int](b, "the tenant filter's options", `document.querySelectorAll('#tenant option[value="initrode"]').length`); n != 0 {
		t.Errorf("the tenant admin's tenant filter offers initrode")
	}
	nav := eval[[]string](b, "the nav", `Array.from(document.querySelectorAll('header nav a')).map(a => a.textContent.trim())`)
	for _, hidden := range []string{"Keys", "Deployments", "Tiers", "Admins"} {
		for _, item := range nav {
			if item == hidden {
				t.Errorf("the tenant admin's nav has %s: %v", hidden, nav)
			}
		}
	}
	if !strings.Contains(strings.Join(nav, ","), "Clients") {
		t.Errorf("the tenant admin's nav lacks Clients: %v", nav)
	}
	b.do("the tenants page", chromedp.Navigate(base+"/console/tenants"), chromedp.WaitVisible(chromedp.CSS("main h1")))
	if got := b.text("main"); strings.Contains(got, "initrode") || !strings.Contains(got, "demo") {
		t.Errorf("the tenant admin's tenants page: %q", got)
	}
	if n := eval[int](b, "the tenant form", `document.querySelectorAll('#create-tenant').length`); n != 0 {
		t.Errorf("the tenant admin's tenants page offers to create a tenant")
	}

	// Requests forged from the page, with the session's cookie and CSRF token: the
	// console's forms would send the same. A 4xx answer to fetch is a network error
	// in the browser's log, which newBrowser does not count; the script catches
	// anything thrown.
	forged := eval[map[string]int](b, "forged requests", `(async () => {
		const csrf = document.querySelector('meta[name="csrf-token"]').content;
		const post = async (path, fields, withCSRF = true) => {
			try {
				const body = new URLSearchParams(fields);
				if (withCSRF) body.set('csrf', csrf);
				const r = await fetch(path, {method: 'POST', body, redirect: 'manual'});
				return r.status;
			} catch (e) {
				return -1;
			}
		};
		const get = async (path) => {
			try { return (await fetch(path, {redirect: 'manual'})).status; } catch (e) { return -1; }
		};
		return {
			disable: await post('/console/clients/rival-app/disable', {revision: '`+revision+`'}),
			disableNoCSRF: await post('/console/clients/eu-app/disable', {revision: '1'}, false),
			mint: await post('/console/clients/rival-app/token', {ttl_seconds: '3600'}),
			override: await post('/console/clients/rival-app/override', {requests_per_minute: '1', for: '900', reason: 'forged'}),
			tenant: await post('/console/tenants', {name: 'evil-corp', display_name: 'Evil'}),
			read: await get('/console/clients/rival-app'),
			deployments: await get('/console/deployments'),
		};
	})()`)
	t.Logf("forged requests: %v", forged)
	for what, want := range map[string][]int{
		"disable":       {http.StatusNotFound, http.StatusForbidden},
		"disableNoCSRF": {http.StatusForbidden},
		"mint":          {http.StatusNotFound, http.StatusForbidden},
		"override":      {http.StatusNotFound, http.StatusForbidden},
		"tenant":        {http.StatusForbidden},
		"read":          {http.StatusNotFound, http.StatusForbidden},
		"deployments":   {http.StatusForbidden},
	} {
		got, ok := forged[what]
		if !ok || (got != want[0] && (len(want) < 2 || got != want[1])) {
			t.Errorf("the forged %s request answered %d, want %v", what, got, want)
		}
	}

	var rival map[string]any
	if status, _ := s.admin(t, http.MethodGet, "/clients/rival-app", nil, &rival); status != http.StatusOK || rival["enabled"] != true {
		t.Errorf("rival-app after the forged disable: %d %v", status, rival)
	}
	if status, _ := s.admin(t, http.MethodGet, "/clients/rival-app/limit-override", nil, nil); status != http.StatusNotFound {
		t.Errorf("rival-app has a limit override after the forged one: %d", status)
	}
	if status, _ := s.admin(t, http.MethodGet, "/tenants/evil-corp", nil, nil); status != http.StatusNotFound {
		t.Errorf("the forged tenant exists: %d", status)
	}
	var euApp map[string]any
	if status, _ := s.admin(t, http.MethodGet, "/clients/eu-app", nil, &euApp); status != http.StatusOK || euApp["enabled"] != true {
		t.Errorf("eu-app after the disable without CSRF token: %d %v", status, euApp)
	}

	// Usage: with requests of both tenants archived, the tenant admin's usage page,
	// its CSV and its overview hold its own tenant's clients only.
	rivalToken, euToken := s.mint(t, "rival-app"), s.mint(t, "eu-app")
	waitfor.Within(t, 15*time.Second, "eu serving rival-app and eu-app", func() bool {
		return s.call(t, "eu", rivalToken, http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini")).Status == http.StatusOK &&
			s.call(t, "eu", euToken, http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini")).Status == http.StatusOK
	})
	from := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour).Format(time.RFC3339)
	to := time.Now().UTC().Truncate(time.Hour).Add(2 * time.Hour).Format(time.RFC3339)
	waitfor.Within(t, 30*time.Second, "both clients' usage archived", func() bool {
		csv := s.adminRaw(t, "/usage?group_by=client&format=csv&from="+url.QueryEscape(from)+"&to="+url.QueryEscape(to))
		return strings.Contains(csv, "rival-app") && strings.Contains(csv, "eu-app")
	})
	b.do("the tenant admin's usage page", chromedp.Navigate(base+"/console/usage?group=client&range=24h"), chromedp.WaitVisible(chromedp.CSS("#usage-table")))
	if got := b.text("#usage-table"); !strings.Contains(got, "eu-app") || strings.Contains(got, "rival-app") {
		t.Errorf("the tenant admin's usage by client: %q", got)
	}
	csv := eval[string](b, "the tenant admin's CSV", `(async () => {
		try {
			const r = await fetch(document.querySelector('#csv').href);
			return r.status + '\n' + await r.text();
		} catch (e) {
			return 'error: ' + e;
		}
	})()`)
	if status, rest, _ := strings.Cut(csv, "\n"); status != "200" || !strings.Contains(rest, "eu-app") || strings.Contains(rest, "rival-app") {
		t.Errorf("the tenant admin's usage CSV: %.500q", csv)
	}
	b.do("the tenant admin's overview", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#live")))
	if got := b.text("main"); strings.Contains(got, "rival-app") {
		t.Errorf("the tenant admin's overview shows rival-app: %q", got)
	}
	if got := b.text("#top-clients"); !strings.Contains(got, "eu-app") {
		t.Errorf("the tenant admin's overview's top clients: %q", got)
	}
}

// TestConsolePagesInChromium: an admin, in Chromium, after real requests through
// both data planes, sees them on the overview (the region table and the charts
// uPlot draws), whose live part refreshes itself; the deployments page's residency
// matrix; usage by client and its CSV, fetched with the browser's session; the
// client's recent requests; a tier change through its preview, which the admin API
// then shows; and an API token made on the own tokens page, shown once, that works
// against the admin API.
func TestConsolePagesInChromium(t *testing.T) {
	t.Parallel()
	const password = "console-pages-password"
	s := startStack(t, withOIDC(password))
	s.seed(t)
	s.waitReady(t)
	base := s.adminURL

	euToken, globalToken := s.mint(t, "eu-app"), s.mint(t, "global-app")
	for i := 0; i < 6; i++ {
		if r := s.call(t, "eu", euToken, http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
			t.Fatalf("eu-app on eu: %d %s", r.Status, r.Body)
		}
	}
	for i := 0; i < 3; i++ {
		if r := s.call(t, "us", globalToken, http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
			t.Fatalf("global-app on us: %d %s", r.Status, r.Body)
		}
	}

	b := newBrowser(t)
	b.signIn(base, "/console/", "admin@demo.example", password)

	// The overview, once the archive has the requests: eu's row counts them, and
	// uPlot drew both charts.
	requests := func(region string) int {
		s := eval[string](b, "the "+region+" row", `(document.querySelector('#region-`+region+` .requests') || {textContent: ''}).textContent`)
		n, _ := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
		return n
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.do("the overview", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#region-table")))
		if requests("eu") >= 6 && requests("us") >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the overview's region table never showed the requests: %q", b.text("#region-table"))
		}
		time.Sleep(time.Second)
	}
	b.waitJS("uPlot to draw the overview's charts", `document.querySelectorAll('figure.chart canvas').length >= 2`, 10*time.Second)
	if got := b.text("#top-clients"); !strings.Contains(got, "eu-app") || !strings.Contains(got, "global-app") {
		t.Errorf("the overview's top clients: %q", got)
	}
	if got := b.text("#region-eu .p50"); got == "" {
		t.Errorf("the overview's eu p50 is empty")
	}
	// The docs' overview, with traffic: written as the run ends, over
	// TestConsoleInChromium's.
	shotAtEnd(t, "overview", b.capture("overview"))

	// The live part refreshes itself (htmx, every 10 s): its time changes.
	stamp := eval[string](b, "the live part's time", `document.querySelector('#live time').getAttribute('datetime')`)
	b.waitJS("the live part to refresh itself", `document.querySelector('#live time') && document.querySelector('#live time').getAttribute('datetime') !== `+strconv.Quote(stamp), 20*time.Second)
	if n := eval[int](b, "the live part's breakers", `document.querySelectorAll('#live #breakers').length`); n != 1 {
		t.Errorf("the refreshed live part has %d breaker tables", n)
	}

	// Deployments: the residency matrix allows eu clients the eu deployment only.
	b.do("the deployments page", chromedp.Navigate(base+"/console/deployments"), chromedp.WaitVisible(chromedp.CSS("#residency-matrix")))
	matrix := eval[map[string]map[string]bool](b, "the residency matrix", `(() => {
		const heads = Array.from(document.querySelectorAll('#residency-matrix thead th'));
		const names = heads.slice(heads.length - document.querySelectorAll('#deployments tbody tr[id^="deployment-"]').length)
			.map(th => th.firstChild.textContent.trim());
		const out = {};
		for (const row of document.querySelectorAll('#residency-matrix tbody tr')) {
			const cells = Array.from(row.querySelectorAll('td')).slice(-names.length);
			const allowed = {};
			names.forEach((n, i) => { allowed[n] = cells[i].querySelector('.badge.on') !== null; });
			out[row.id.replace(/^residency-/, '')] = allowed;
		}
		return out;
	})()`)
	if eu := matrix["eu"]; eu == nil || !eu["openai-eu"] || eu["openai-us"] {
		t.Errorf("the residency matrix's eu row: %v", matrix)
	}
	if us := matrix["us"]; us == nil || us["openai-eu"] || !us["openai-us"] {
		t.Errorf("the residency matrix's us row: %v", matrix)
	}
	if g := matrix["global"]; g == nil || !g["openai-eu"] || !g["openai-us"] {
		t.Errorf("the residency matrix's global row: %v", matrix)
	}
	for _, sel := range []string{"#breakers", "#deployments", "#models"} {
		if n := eval[int](b, sel, `document.querySelectorAll('`+sel+`').length`); n != 1 {
			t.Errorf("the deployments page has %d %s", n, sel)
		}
	}
	if got := b.text("#deployments"); !strings.Contains(got, "openai-eu") || !strings.Contains(got, "openai-us") {
		t.Errorf("the deployments table: %q", got)
	}
	if got := b.text("#models"); !strings.Contains(got, "gpt-4o-mini") {
		t.Errorf("the models table: %q", got)
	}
	b.screenshot("deployments")

	// Usage by client, and its CSV with the browser's session.
	b.do("the usage page", chromedp.Navigate(base+"/console/usage?group=client&range=24h"), chromedp.WaitVisible(chromedp.CSS("#usage-table")))
	if got := b.text("#usage-table"); !strings.Contains(got, "eu-app") || !strings.Contains(got, "global-app") {
		t.Errorf("the usage table by client: %q", got)
	}
	b.waitJS("uPlot to draw the usage charts", `document.querySelectorAll('figure.chart canvas').length >= 2`, 10*time.Second)
	csv := eval[string](b, "the CSV download", `(async () => {
		try {
			const r = await fetch(document.querySelector('#csv').href);
			return r.status + '\n' + (r.headers.get('content-type') || '') + '\n' + await r.text();
		} catch (e) {
			return 'error: ' + e;
		}
	})()`)
	if status, rest, _ := strings.Cut(csv, "\n"); status != "200" || !strings.Contains(rest, "eu-app") || !strings.Contains(rest, ",") {
		t.Errorf("the usage CSV fetched with the session: %.500q", csv)
	}
	b.screenshot("usage")

	// The client's page lists its recent requests (metadata only) and its activity chart.
	b.do("eu-app's page", chromedp.Navigate(base+"/console/clients/eu-app"), chromedp.WaitVisible(chromedp.CSS("#recent")))
	if n := eval[int](b, "eu-app's recent requests", `Array.from(document.querySelectorAll('#recent tbody tr')).filter(tr => tr.textContent.includes('gpt-4o-mini')).length`); n < 6 {
		t.Errorf("eu-app's page lists %d of its 6 requests: %q", n, b.text("#recent"))
	}
	b.waitJS("uPlot to draw eu-app's activity", `document.querySelectorAll('figure.chart canvas').length >= 1`, 10*time.Second)
	shotAtEnd(t, "client", b.capture("client"))

	// A tier change through its preview.
	b.do("the tiers page", chromedp.Navigate(base+"/console/tiers"), chromedp.WaitVisible(chromedp.CSS("#tier-default")))
	b.screenshot("tiers")
	b.do("preview a change of the default tier",
		chromedp.Navigate(base+"/console/tiers/default"),
		chromedp.WaitVisible(chromedp.CSS("#tier-form")),
		chromedp.Clear(chromedp.CSS("#requests_per_minute")),
		chromedp.SendKeys(chromedp.CSS("#requests_per_minute"), "120"),
		chromedp.Click(chromedp.CSS("#preview")),
		chromedp.WaitVisible(chromedp.CSS("#diff")),
	)
	if got := b.text("#diff"); !strings.Contains(got, "requests_per_minute") {
		t.Errorf("the preview's diff: %q", got)
	}
	if before, after := b.text("#diff-requests_per_minute .before"), b.text("#diff-requests_per_minute .after"); before != "60" || after != "120" {
		t.Errorf("the preview's requests_per_minute: %q → %q", before, after)
	}
	if n := eval[int](b, "the diff's rows", `document.querySelectorAll('#diff tbody tr').length`); n != 1 {
		t.Errorf("the preview shows %d changes, want 1: %q", n, b.text("#diff"))
	}
	b.screenshot("tier-preview")
	var tier map[string]any
	s.admin(t, http.MethodGet, "/tiers/default", nil, &tier)
	if fmt.Sprint(tier["requests_per_minute"]) != "60" {
		t.Errorf("the tier changed before it was saved: %v", tier)
	}
	b.do("save the change", chromedp.Click(chromedp.CSS("#save")), chromedp.WaitVisible(chromedp.CSS(`.flash.ok[data-done="tier-saved"]`)))
	if got := b.text("#current-rpm"); got != "120" {
		t.Errorf("the tier page after saving shows %q requests per minute", got)
	}
	if status, _ := s.admin(t, http.MethodGet, "/tiers/default", nil, &tier); status != http.StatusOK || fmt.Sprint(tier["requests_per_minute"]) != "120" ||
		fmt.Sprint(tier["tokens_per_hour"]) != "100000" {
		t.Errorf("the tier saved in the console: %d %v", status, tier)
	}

	// Admins, and an API token for the signed-in admin, shown once.
	b.do("the admins page", chromedp.Navigate(base+"/console/admins"), chromedp.WaitVisible(chromedp.CSS("#principal-table")))
	if got := b.text("#principal-table"); !strings.Contains(got, "admin@demo.example") {
		t.Errorf("the admins page: %q", got)
	}
	b.screenshot("admins")
	b.do("create an API token",
		chromedp.Navigate(base+"/console/me/tokens"),
		chromedp.WaitVisible(chromedp.CSS("#token-name")),
		chromedp.SendKeys(chromedp.CSS("#token-name"), "console e2e"),
		chromedp.Click(chromedp.CSS("#create-token")),
		chromedp.WaitVisible(chromedp.CSS("#token-value")),
	)
	apiToken, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS("#token-value")))
	if err != nil || len(apiToken) < 20 {
		t.Fatalf("the new API token: %q %v", apiToken, err)
	}
	b.do("the tokens page again", chromedp.Navigate(base+"/console/me/tokens"), chromedp.WaitVisible(chromedp.CSS("#token-table")))
	html := eval[string](b, "the tokens page", `document.documentElement.outerHTML`)
	if strings.Contains(html, apiToken) || strings.Contains(html, `id="token-value"`) {
		t.Errorf("the API token is shown again")
	}
	if got := b.text("#token-table"); !strings.Contains(got, "console e2e") || !strings.Contains(got, "active") {
		t.Errorf("the token table: %q", got)
	}
	req, err := http.NewRequest(http.MethodGet, base+"/admin/v1/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var who struct {
		Principal  string `json:"principal"`
		Credential string `json:"credential"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &who) != nil || who.Principal != "admin@demo.example" || !strings.HasPrefix(who.Credential, "token:") {
		t.Errorf("whoami with the console's API token: %d %s", resp.StatusCode, raw)
	}
	waitfor.Within(t, 10*time.Second, "the token's use on the tokens page", func() bool {
		b.do("the tokens page", chromedp.Navigate(base+"/console/me/tokens"), chromedp.WaitVisible(chromedp.CSS("#token-table")))
		return !strings.Contains(b.text("#token-table"), "never")
	})

}
