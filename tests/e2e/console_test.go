package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// chromium is the path of a Chromium (or Chrome) binary, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser is a headless Chromium for one test, which records what its pages write
// to the console.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

// newBrowser starts Chromium. The test fails, saying what to install, when there is
// none. When the test ends, any uncaught exception, console.error or browser log
// error (a CSP violation among them) on any page fails it; network errors, such as
// the 4xx of a form sent back with its field errors, do not.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium()
	if path == "" {
		t.Fatal("the console tests drive a real Chromium: install it (Debian: apt-get install chromium; .ci/run does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	b := &browser{t: t, ctx: ctx}
	messages := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.messages = append(b.messages, m)
			b.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		b.mu.Lock()
		for _, m := range b.messages {
			if (m.IsException() || m.Type == "error") && m.Source != "network" {
				t.Errorf("the browser's console: %s (%s)", m, m.URL)
			}
		}
		b.mu.Unlock()
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		<-done
	})
	return b
}

// do runs actions, failing the test with what it was doing.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// text is the visible text of the first element matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// screenshot writes the page as name.png to $PORTCULLIS_CONSOLE_SCREENSHOTS, when
// set (make console-screenshots sets it to docs/console).
func (b *browser) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("PORTCULLIS_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // quality 100 makes a PNG
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// signIn signs email in through the dev OIDC provider's form, starting at the
// console's path.
func (b *browser) signIn(base, path, email, password string) {
	b.t.Helper()
	b.do("sign in as "+email,
		chromedp.Navigate(base+path),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), email),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
	)
	// The sign-in ends with a page that moves on to the console by a meta refresh:
	// wait until the console's page is the one loaded and stays.
	deadline := time.Now().Add(20 * time.Second)
	for {
		loc, _ := chromedp.Run(b.ctx, chromedp.Location())
		if u, err := url.Parse(loc); err == nil && u.RequestURI() == path {
			ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
			got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#principal")))
			cancel()
			if err == nil && got == email {
				return
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("signed in as %s: the console's %s did not load (at %s)", email, path, loc)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConsoleInChromium: an admin, in a real Chromium, signs in through the dev OIDC
// provider, creates a tenant and a client, disables the client (and a data plane
// refuses its token), and sets a limit override (which the data planes enforce);
// an auditor sees no write control. No page logs an error or a CSP violation.
func TestConsoleInChromium(t *testing.T) {
	t.Parallel()
	const password = "console-test-password"
	s := startStack(t, withOIDC(password))
	s.seed(t)
	base := s.adminURL

	b := newBrowser(t)
	b.signIn(base, "/console/tenants", "admin@demo.example", password)
	b.do("create a tenant",
		chromedp.SendKeys(chromedp.CSS("#name"), "initech"),
		chromedp.SendKeys(chromedp.CSS("#display_name"), "Initech"),
		chromedp.Click(chromedp.CSS("#create-tenant")),
		chromedp.WaitVisible(chromedp.CSS(`.flash.ok[data-done="tenant-created"]`)),
	)
	b.screenshot("tenants")
	var tenant map[string]any
	if status, _ := s.admin(t, http.MethodGet, "/tenants/initech", nil, &tenant); status != http.StatusOK || tenant["display_name"] != "Initech" {
		t.Fatalf("the tenant made in the console: %d %v", status, tenant)
	}

	b.do("create a client with a bad id, then fix it",
		chromedp.Navigate(base+"/console/clients/new"),
		chromedp.SendKeys(chromedp.CSS("#client_id"), "initech app!"),
		chromedp.SetValue(chromedp.CSS("#tenant"), "initech"),
		chromedp.SetValue(chromedp.CSS("#tier"), "default"),
		chromedp.SetValue(chromedp.CSS("#residency"), "eu"),
		chromedp.Click(chromedp.CSS("#create-client")),
		chromedp.WaitVisible(chromedp.CSS("#client_id-error")),
		chromedp.Clear(chromedp.CSS("#client_id")),
		chromedp.SendKeys(chromedp.CSS("#client_id"), "initech-app"),
		chromedp.Click(chromedp.CSS("#create-client")),
		chromedp.WaitVisible(chromedp.CSS("#disable")),
	)
	token := s.mint(t, "initech-app")
	waitfor.Within(t, 15*time.Second, "the new client served by eu", func() bool {
		return s.call(t, "eu", token, http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini")).Status == http.StatusOK
	})

	b.do("disable the client", chromedp.Click(chromedp.CSS("#disable")), chromedp.WaitVisible(chromedp.CSS("#enable")))
	if got := b.text("#client-state"); !strings.Contains(got, "disabled") {
		t.Fatalf("the client's state after disabling: %q", got)
	}
	waitfor.Within(t, 15*time.Second, "eu refusing the disabled client", func() bool {
		r := s.call(t, "eu", token, http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini"))
		return r.Status == http.StatusForbidden && r.code() == "client_disabled"
	})

	b.do("enable it again and set an override of 1 request a minute",
		chromedp.Click(chromedp.CSS("#enable")),
		chromedp.WaitVisible(chromedp.CSS("#disable")),
		chromedp.SendKeys(chromedp.CSS("#requests_per_minute"), "1"),
		chromedp.SetValue(chromedp.CSS("#for"), "900"),
		chromedp.SendKeys(chromedp.CSS("#reason"), "console test"),
		chromedp.Click(chromedp.CSS("#set-override")),
		chromedp.WaitVisible(chromedp.CSS("#override-now")),
	)
	b.screenshot("client")
	b.do("the client list", chromedp.Navigate(base+"/console/clients"), chromedp.WaitVisible(chromedp.CSS("#client-rows")))
	b.screenshot("clients")
	b.do("search as you type (htmx)",
		chromedp.SendKeys(chromedp.CSS("#q"), "initech"),
		chromedp.WaitNotPresent(chromedp.CSS(`a[href="/console/clients/eu-app"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/console/clients/initech-app"]`)),
	)
	if loc, err := chromedp.Run(b.ctx, chromedp.Location()); err != nil || !strings.Contains(loc, "q=initech") {
		t.Fatalf("the search's URL: %q %v", loc, err)
	}
	b.do("the change history", chromedp.Navigate(base+"/console/changes?actor=admin@demo.example"), chromedp.WaitVisible(chromedp.CSS("#change-table")))
	if got := b.text("#change-table"); !strings.Contains(got, "initech-app") || !strings.Contains(got, "session:") {
		t.Fatalf("the change history of the console's writes: %q", got)
	}
	b.screenshot("changes")
	b.do("the overview", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.CSS("#count-clients")))
	b.screenshot("overview")
	var override map[string]any
	if status, _ := s.admin(t, http.MethodGet, "/clients/initech-app/limit-override", nil, &override); status != http.StatusOK ||
		fmt.Sprint(override["requests_per_minute"]) != "1" || override["set_by"] != "admin@demo.example" {
		t.Fatalf("the override set in the console: %d %v", status, override)
	}
	waitfor.Within(t, 15*time.Second, "eu enforcing the override", func() bool {
		return s.call(t, "eu", token, http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini")).Status == http.StatusTooManyRequests
	})

	// Audit: an export of eu taken through the admin API verifies in the console;
	// the same file with one event changed does not.
	exportFile := filepath.Join(t.TempDir(), "audit-eu.ndjson")
	from, to := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339), time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	var body string
	waitfor.Within(t, 20*time.Second, "initech-app's events in eu's archive", func() bool {
		body = s.adminRaw(t, "/audit/export?region=eu&from="+url.QueryEscape(from)+"&to="+url.QueryEscape(to))
		return strings.Contains(body, `"chain_head"`) && strings.Contains(body, "initech-app")
	})
	if err := os.WriteFile(exportFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	b.do("verify the export",
		chromedp.Navigate(base+"/console/audit"),
		chromedp.SetUploadFiles(chromedp.CSS("#export-file"), []string{exportFile}),
		chromedp.Click(chromedp.CSS("#verify")),
		chromedp.WaitVisible(chromedp.CSS("#verified")),
	)
	if got := b.text("#verified"); !strings.Contains(got, "region eu") || !strings.Contains(got, "signed by") {
		t.Fatalf("the verification: %q", got)
	}
	b.screenshot("audit")
	tampered := strings.Replace(body, "initech-app", "initech-apq", 1)
	if err := os.WriteFile(exportFile, []byte(tampered), 0o600); err != nil {
		t.Fatal(err)
	}
	b.do("verify a tampered export",
		chromedp.SetUploadFiles(chromedp.CSS("#export-file"), []string{exportFile}),
		chromedp.Click(chromedp.CSS("#verify")),
		chromedp.WaitVisible(chromedp.CSS("#verify-failed")),
	)
	if got := b.text("#verify-failed"); !strings.Contains(got, "line ") {
		t.Fatalf("the tampered export's verification: %q", got)
	}

	aud := newBrowser(t)
	aud.signIn(base, "/console/clients/initech-app", "auditor@demo.example", password)
	forms, err := chromedp.Run(aud.ctx, chromedp.Evaluate[int](`document.querySelectorAll('main form[method="post"], a[href="/console/clients/new"]').length`))
	if err != nil || forms != 0 {
		t.Fatalf("the auditor's client page has %d write controls (%v)", forms, err)
	}
	// A disable forged from the auditor's page with its session's CSRF token: the
	// admin API refuses it, and the client stays as it was.
	enabled := func() any {
		var c map[string]any
		if status, _ := s.admin(t, http.MethodGet, "/clients/initech-app", nil, &c); status != http.StatusOK {
			t.Fatalf("GET /clients/initech-app = %d", status)
		}
		return c["enabled"]
	}
	before := enabled()
	forged := eval[int](aud, "the auditor's forged disable", `(async () => {
		const body = new URLSearchParams({csrf: document.querySelector('meta[name="csrf-token"]').content, revision: '1'});
		try { return (await fetch('/console/clients/initech-app/disable', {method: 'POST', body, redirect: 'manual'})).status; } catch (e) { return -1; }
	})()`)
	if forged != http.StatusForbidden || enabled() != before {
		t.Fatalf("the auditor's forged disable: %d", forged)
	}
}

// TestConsoleKeysInChromium: with the keys in Vault, a key custodian's flow in
// Chromium: the keys page shows the eu worker's fetch of version 1; a rotation without a reason is
// refused beside the fields; with a reason and the confirmation it rotates to the
// version 2 an operator wrote, which the page and the admin API then show, with the
// previous version in its overlap; and the eu data plane keeps serving. An
// emergency revoke raises a key_revoked alert, which the admin acknowledges.
func TestConsoleKeysInChromium(t *testing.T) {
	t.Parallel()
	const password = "console-keys-password"
	v := vaulttest.Start(t)
	s := startStack(t, withVault(v), withOIDC(password), withWorkers(worker{name: "eu", region: "eu"}))
	stamp := fmt.Sprint(time.Now().UnixNano())
	for _, region := range []string{"eu", "us"} {
		writeKey(t, v, s.keyPaths[region], "canary-"+region+"-1-"+stamp, 0)
		s.upstream[region].AcceptKey("canary-" + region + "-1-" + stamp)
	}
	s.seed(t)
	s.waitReady(t)
	token := s.mint(t, "eu-app")
	if r := s.call(t, "eu", token, http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
		t.Fatalf("eu before the rotation: %d %s", r.Status, r.Body)
	}

	b := newBrowser(t)
	b.signIn(s.adminURL, "/console/keys", "admin@demo.example", password)
	if got := b.text("#key-openai-eu"); !strings.Contains(got, "e2e-eu: v1 ok") {
		t.Fatalf("the eu worker's fetch of version 1 is not shown: %q", got)
	}
	writeKey(t, v, s.keyPaths["eu"], "canary-eu-2-"+stamp, 1)
	s.upstream["eu"].AcceptKey("canary-eu-2-" + stamp)
	b.do("a rotation without a reason or confirmation",
		chromedp.SetValue(chromedp.CSS("#rotate-deployment"), "openai-eu"),
		chromedp.Click(chromedp.CSS("#rotate")),
		chromedp.WaitVisible(chromedp.CSS(".flash.error")),
	)
	b.do("the rotation",
		chromedp.SetValue(chromedp.CSS("#rotate-deployment"), "openai-eu"),
		chromedp.SendKeys(chromedp.CSS("#rotate-reason"), "quarterly rotation"),
		chromedp.Click(chromedp.CSS("#rotate-confirm")),
		chromedp.Click(chromedp.CSS("#rotate")),
		chromedp.WaitVisible(chromedp.CSS(`.flash.ok[data-done="rotated"]`)),
	)
	b.screenshot("keys")
	if got := b.text("#key-openai-eu .version"); !strings.HasPrefix(got, "2") || !strings.Contains(got, "previous 1") {
		t.Fatalf("the key version shown after the rotation: %q", got)
	}
	var status struct {
		Data []struct {
			Deployment string `json:"deployment"`
			Version    int    `json:"version"`
		} `json:"data"`
	}
	s.admin(t, http.MethodGet, "/secrets/status", nil, &status)
	found := false
	for _, d := range status.Data {
		found = found || d.Deployment == "openai-eu" && d.Version == 2
	}
	if !found {
		t.Fatalf("the key status after the console's rotation: %+v", status.Data)
	}
	var history struct {
		Data []struct {
			Reason string `json:"reason"`
			Actor  string `json:"actor"`
		} `json:"data"`
	}
	s.admin(t, http.MethodGet, "/secrets/history?deployment=openai-eu&limit=1", nil, &history)
	if len(history.Data) != 1 || history.Data[0].Reason != "quarterly rotation" {
		t.Fatalf("the rotation history: %+v", history.Data)
	}
	waitfor.Within(t, 10*time.Second, "eu serving with the new key", func() bool {
		return s.call(t, "eu", token, http.MethodPost, "/v1/chat/completions", chatBody("gpt-4o-mini")).Status == http.StatusOK
	})

	// Emergency revoke with version 3 written as the successor: the key_revoked
	// alert it raises is acknowledged on the alerts page.
	for _, region := range []string{"eu", "us"} {
		writeKey(t, v, s.keyPaths[region], "canary-"+region+"-3-"+stamp, map[string]int{"eu": 2, "us": 1}[region])
		s.upstream[region].AcceptKey("canary-" + region + "-3-" + stamp)
	}
	b.do("the emergency revoke",
		chromedp.SendKeys(chromedp.CSS("#revoke-reason"), "key_suspected_compromise"),
		chromedp.Click(chromedp.CSS("#revoke-confirm")),
		chromedp.Click(chromedp.CSS("#revoke")),
		chromedp.WaitVisible(chromedp.CSS(`.flash.ok[data-done="revoked"]`)),
	)
	waitfor.Within(t, 10*time.Second, "the key_revoked alert", func() bool {
		var open struct {
			Data []struct {
				Kind string `json:"kind"`
			} `json:"data"`
		}
		s.admin(t, http.MethodGet, "/alerts?acknowledged=false", nil, &open)
		for _, a := range open.Data {
			if a.Kind == "key_revoked" {
				return true
			}
		}
		return false
	})
	b.do("acknowledge the key_revoked alert",
		chromedp.Navigate(s.adminURL+"/console/alerts?kind=key_revoked"),
		chromedp.Click(chromedp.CSS(`#alert-table button[id^="ack-"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.flash.ok[data-done="alert-acked"]`)),
	)
	b.screenshot("alerts")
	var alerts struct {
		Data []struct {
			Kind           string  `json:"kind"`
			AcknowledgedBy *string `json:"acknowledged_by"`
		} `json:"data"`
	}
	s.admin(t, http.MethodGet, "/alerts", nil, &alerts)
	acked := false
	for _, a := range alerts.Data {
		acked = acked || a.Kind == "key_revoked" && a.AcknowledgedBy != nil && *a.AcknowledgedBy == "admin@demo.example"
	}
	if !acked {
		t.Fatalf("the key_revoked alert after the console's ack: %+v", alerts.Data)
	}
}
