package app

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
	"github.com/portcullis-gw/portcullis/controlplane/devoidc"
)

// withOIDC starts the dev OIDC provider with the demo people and one person whose
// group maps to no role, and returns the tweak that points a control plane at it.
// Once the control plane runs, register its redirect URL with allow.
func withOIDC(t testing.TB, password string) (p *devoidc.Provider, tweak func(*Config)) {
	t.Helper()
	people := append(devoidc.DemoPeople(password),
		devoidc.Person{Email: "stranger@demo.example", Password: password, Groups: []string{"nobody"}},
		devoidc.Person{Email: "ceo@demo.example", Password: password, Groups: []string{"nobody"}, Unverified: true},
		devoidc.Person{Email: "newhire@demo.example", Password: password, Groups: []string{"nobody"}})
	p, err := devoidc.Start("127.0.0.1:0", people)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	secret := filepath.Join(t.TempDir(), "oidc-secret")
	if err := os.WriteFile(secret, []byte(p.ClientSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, func(c *Config) {
		c.OIDC = OIDCConfig{Issuer: p.Issuer(), ClientID: p.ClientID(), ClientSecretFile: secret, Scopes: "email,profile,groups",
			RoleClaim: "groups", RoleMap: devoidc.RoleMap, NameClaim: "email"}
	}
}

var csrfMeta = regexp.MustCompile(`<meta name="csrf-token" content="([^"]+)">`)

// session is a signed-in browser and its CSRF token, read from the console page.
type session struct {
	t    testing.TB
	b    *devoidc.Browser
	base string
	csrf string
}

func signIn(t testing.TB, base, email, password string) *session {
	t.Helper()
	b := devoidc.NewBrowser()
	final, status, body, err := b.SignIn(base+"/auth/login", email, password)
	if err != nil || status != http.StatusOK || !strings.Contains(body, "You are signed in") {
		t.Fatalf("sign in as %s: %v: %d at %s: %s", email, err, status, final, body)
	}
	s := &session{t: t, b: b, base: base}
	home := s.do(http.MethodGet, "/", "", "")
	m := csrfMeta.FindStringSubmatch(home.body)
	if home.status != http.StatusOK || m == nil || !strings.Contains(home.body, email) {
		t.Fatalf("console home after sign-in: %d %s", home.status, home.body)
	}
	s.csrf = m[1]
	return s
}

// do sends a request with the session's cookie (and csrf as X-CSRF-Token, when set).
func (s *session) do(method, path, csrf, body string) httpResult {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.base+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if csrf != "" {
		req.Header.Set("X-CSRF-Token", csrf)
	}
	resp, err := s.b.Client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, resp.Header, string(b)}
}

// TestSignInWithOIDC: the demo auditor signs in in a "browser" through the dev
// OIDC provider, sees read-only data, cannot write (not even with the CSRF token),
// and an API token the auditor makes is refused writes too; the session's cookie
// is HttpOnly and SameSite=Strict; a state-changing request without the CSRF token
// is refused; idle and expired sessions end; sign-out ends the session; an
// unmapped person gets no session; a replayed callback fails.
func TestSignInWithOIDC(t *testing.T) {
	const password = "pw-for-this-test"
	idp, tweak := withOIDC(t, password)
	a, cfg := startApp(t, tweak)
	base := "http://" + a.Addr()
	idp.AllowRedirect(base + "/auth/callback")
	admin := admintest.Admin(t, base, cfg.DataDir)
	for _, body := range []string{`{"name":"demo"}`, `{"name":"globex"}`} {
		if r := do(t, http.MethodPost, base+"/admin/v1/tenants", admin, body); r.status != http.StatusCreated {
			t.Fatalf("tenant: %d %s", r.status, r.body)
		}
	}

	aud := signIn(t, base, "auditor@demo.example", password)
	home := aud.do(http.MethodGet, "/", "", "")
	tenants := aud.do(http.MethodGet, "/console/tenants", "", "")
	if !strings.Contains(home.body, `<span id="roles">auditor</span>`) || !strings.Contains(tenants.body, "<td>globex</td>") ||
		strings.Contains(tenants.body, `id="create-tenant"`) {
		t.Fatalf("the auditor's console: %s\n%s", home.body, tenants.body)
	}
	for _, c := range aud.b.Client.Jar.Cookies(mustURL(t, base+"/")) {
		if c.Name == "pc_session" && !strings.HasPrefix(c.Value, "pcs_") {
			t.Fatalf("session cookie %q", c.Value)
		}
	}
	if r := aud.do(http.MethodGet, "/admin/v1/whoami", "", ""); r.status != http.StatusOK ||
		!strings.Contains(r.body, `"principal":"auditor@demo.example"`) || !strings.Contains(r.body, `"credential":"session:ses_`) {
		t.Fatalf("whoami with the session: %d %s", r.status, r.body)
	}
	if r := aud.do(http.MethodPost, "/admin/v1/tenants", "", `{"name":"x"}`); r.status != http.StatusForbidden || !strings.Contains(r.body, `"csrf_failed"`) {
		t.Fatalf("a write without the CSRF token: %d %s", r.status, r.body)
	}
	if r := aud.do(http.MethodPost, "/admin/v1/tenants", aud.csrf, `{"name":"x"}`); r.status != http.StatusForbidden ||
		!strings.Contains(r.body, `"permission":"tenants:write"`) {
		t.Fatalf("the auditor writes a tenant: %d %s", r.status, r.body)
	}
	r := aud.do(http.MethodPost, "/admin/v1/me/tokens", aud.csrf, `{"name":"laptop","expires_in_seconds":3600}`)
	token := between(r.body, `"token":"`, `"`)
	if r.status != http.StatusCreated || token == "" {
		t.Fatalf("the auditor's own token: %d %s", r.status, r.body)
	}
	if r := do(t, http.MethodPost, base+"/admin/v1/tenants", token, `{"name":"x"}`); r.status != http.StatusForbidden || !strings.Contains(r.body, `"forbidden"`) {
		t.Fatalf("a write with the auditor's token: %d %s", r.status, r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/audit/checkpoints?region=eu", token, ""); r.status == http.StatusForbidden {
		t.Fatalf("the auditor may read audit checkpoints: %d %s", r.status, r.body)
	}

	adm := signIn(t, base, "admin@demo.example", password)
	if r := adm.do(http.MethodPost, "/admin/v1/tenants", adm.csrf, `{"name":"initech"}`); r.status != http.StatusCreated {
		t.Fatalf("the admin writes a tenant: %d %s", r.status, r.body)
	}
	ta := signIn(t, base, "tenant-admin@demo.example", password)
	if r := ta.do(http.MethodGet, "/admin/v1/tenants", "", ""); r.status != http.StatusOK || strings.Contains(r.body, "globex") ||
		!strings.Contains(r.body, `"demo"`) {
		t.Fatalf("the tenant admin's tenants: %d %s", r.status, r.body)
	}
	if strings.Contains(ta.do(http.MethodGet, "/", "", "").body, "globex") {
		t.Fatal("the tenant admin's console shows another tenant")
	}

	// Nobody without a role gets a session; a wrong password gets the form again.
	final, status, body, _ := devoidc.NewBrowser().SignIn(base+"/auth/login", "stranger@demo.example", password)
	if status != http.StatusForbidden || !strings.Contains(body, "holds no Portcullis role") {
		t.Fatalf("an unmapped person: %d at %s: %s", status, final, body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/stranger@demo.example", admin, ""); r.status != http.StatusNotFound {
		t.Fatalf("a person without a role became a principal: %d %s", r.status, r.body)
	}
	if _, status, body, _ := devoidc.NewBrowser().SignIn(base+"/auth/login", "admin@demo.example", "wrong"); status != http.StatusUnauthorized ||
		!strings.Contains(body, "wrong password") {
		t.Fatalf("a wrong password: %d %s", status, body)
	}

	// A person an administrator made ahead of time is linked at their first sign-in,
	// and holds the roles given; but not through an email the provider has not
	// verified, which anyone might have set.
	for _, body := range []string{`{"name":"newhire@demo.example","kind":"person","roles":[{"role":"operator"}]}`,
		`{"name":"ceo@demo.example","kind":"person","roles":[{"role":"admin"}]}`} {
		if r := do(t, http.MethodPost, base+"/admin/v1/principals", admin, body); r.status != http.StatusCreated {
			t.Fatalf("pre-create a person: %d %s", r.status, r.body)
		}
	}
	hire := signIn(t, base, "newhire@demo.example", password)
	if r := hire.do(http.MethodGet, "/admin/v1/whoami", "", ""); !strings.Contains(r.body, `"role":"operator"`) {
		t.Fatalf("the pre-made person's roles after linking: %s", r.body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/changes?resource=principals&actor=newhire@demo.example", admin, ""); !strings.Contains(r.body, `"action":"link"`) {
		t.Fatalf("the link is not in the history: %s", r.body)
	}
	if _, status, body, _ := devoidc.NewBrowser().SignIn(base+"/auth/login", "ceo@demo.example", password); status != http.StatusForbidden ||
		!strings.Contains(body, "No access") {
		t.Fatalf("an unverified email claiming an administrator: %d %s", status, body)
	}
	if r := do(t, http.MethodGet, base+"/admin/v1/principals/ceo@demo.example", admin, ""); strings.Contains(r.body, "oidc_subject") {
		t.Fatalf("an unverified email linked a principal: %s", r.body)
	}

	// Idle and absolute timeouts, by the database clock.
	conn, err := pgx.Connect(context.Background(), cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `UPDATE admin_sessions SET last_seen_at = now() - interval '31 minutes'
		WHERE principal = 'tenant-admin@demo.example'`); err != nil {
		t.Fatal(err)
	}
	if r := ta.do(http.MethodGet, "/admin/v1/whoami", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("an idle session: %d %s", r.status, r.body)
	}
	if _, err := conn.Exec(context.Background(), `UPDATE admin_sessions SET expires_at = now() WHERE principal = 'admin@demo.example'`); err != nil {
		t.Fatal(err)
	}
	if r := adm.do(http.MethodGet, "/admin/v1/whoami", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("an expired session: %d %s", r.status, r.body)
	}

	// Sign-out needs the CSRF token, then ends the session.
	form := func(csrf string) httpResult {
		req, _ := http.NewRequest(http.MethodPost, base+"/auth/logout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := aud.b.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return httpResult{status: resp.StatusCode}
	}
	if r := form("forged"); r.status != http.StatusForbidden {
		t.Fatalf("sign-out with a forged CSRF token: %d", r.status)
	}
	if r := form(aud.csrf); r.status != http.StatusOK {
		t.Fatalf("sign-out: %d", r.status)
	}
	if r := aud.do(http.MethodGet, "/admin/v1/whoami", "", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("whoami after sign-out: %d %s", r.status, r.body)
	}

	// The history has each sign-in, by its person.
	if r := do(t, http.MethodGet, base+"/admin/v1/changes?resource=sessions&actor=auditor@demo.example", admin, ""); !strings.Contains(r.body, `"action":"sign_in"`) ||
		!strings.Contains(r.body, `"action":"sign_out"`) {
		t.Fatalf("the auditor's sign-in and sign-out are not in the history: %s", r.body)
	}
}

// TestSignInCallbackIsSingleUseAndBrowserBound: a callback replayed, or carried to
// another browser, signs nobody in.
func TestSignInCallbackIsSingleUseAndBrowserBound(t *testing.T) {
	const password = "pw-for-this-test"
	idp, tweak := withOIDC(t, password)
	a, _ := startApp(t, tweak)
	base := "http://" + a.Addr()
	idp.AllowRedirect(base + "/auth/callback")

	// Sign in, but stop at the redirect to the callback to keep its URL.
	b := devoidc.NewBrowser()
	var callback string
	b.Client.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Path == "/auth/callback" {
			callback = req.URL.String()
			return http.ErrUseLastResponse
		}
		return nil
	}
	if _, _, _, err := b.SignIn(base+"/auth/login", "admin@demo.example", password); err != nil || callback == "" {
		t.Fatalf("sign in up to the callback: %v %q", err, callback)
	}
	other := devoidc.NewBrowser()
	resp, err := other.Client.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the callback in another browser: %d", resp.StatusCode)
	}
	// That used the sign-in up: the right browser cannot finish it either.
	b.Client.CheckRedirect = nil
	resp, err = b.Client.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a replayed callback: %d", resp.StatusCode)
	}
	for _, bad := range []string{"/auth/login?return_to=//evil.example/", "/auth/login?return_to=https://evil.example/"} {
		final, status, body, err := devoidc.NewBrowser().SignIn(base+bad, "admin@demo.example", password)
		if err != nil || status != http.StatusOK || strings.Contains(body, "evil") {
			t.Fatalf("%s: %v %d at %s: %s", bad, err, status, final, body)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func between(s, open, close string) string {
	_, rest, _ := strings.Cut(s, open)
	v, _, _ := strings.Cut(rest, close)
	return v
}
