// Package devoidc runs the development OpenID Connect provider that make run and the
// tests sign people in with (never the control plane binary): oauth2-proxy's mockoidc, a real provider of
// the authorization code flow (discovery, JWKS, PKCE, ID tokens with email and
// groups), behind a sign-in form that asks for a demo person's name and password
// and accepts only the control plane's registered redirect URL. It listens on
// loopback only.
package devoidc

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/oauth2-proxy/mockoidc"
)

// Person is a demo person who can sign in.
type Person struct {
	Email    string // also the sign-in name
	Password string
	Groups   []string
	Role     string // what the control plane's role map makes of Groups, for the summary
	// Unverified makes the provider say email_verified false (tests).
	Unverified bool
}

// Demo groups, and the role map the control plane needs for them.
const (
	AdminsGroup       = "portcullis-admins"
	AuditorsGroup     = "portcullis-auditors"
	TenantAdminsGroup = "demo-tenant-admins"
	// RoleMap is the control plane's oidc-role-map for the demo people: the demo
	// tenant's admins administer the tenant "demo" that make run applies (deploy/demo/gateway.yaml).
	RoleMap = AdminsGroup + "=admin," + AuditorsGroup + "=auditor," + TenantAdminsGroup + "=tenant_admin:demo"
)

// DemoPeople are make run's people, each with password.
func DemoPeople(password string) []Person {
	return []Person{
		{Email: "admin@demo.example", Password: password, Groups: []string{AdminsGroup}, Role: "admin"},
		{Email: "auditor@demo.example", Password: password, Groups: []string{AuditorsGroup}, Role: "auditor"},
		{Email: "tenant-admin@demo.example", Password: password, Groups: []string{TenantAdminsGroup}, Role: "tenant_admin of demo"},
	}
}

// Provider is a running development OIDC provider. It is safe for concurrent use.
type Provider struct {
	m      *mockoidc.MockOIDC
	people []Person

	// mu makes a sign-in's queueing of its person and mockoidc's taking of it one
	// step, so that concurrent sign-ins do not swap people; and guards redirects.
	mu        sync.Mutex
	redirects []string
}

// AllowRedirect registers one more redirect URL, e.g. that of a control plane
// whose port was picked after the provider started.
func (p *Provider) AllowRedirect(u string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redirects = append(p.redirects, u)
}

func (p *Provider) redirectAllowed(u string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.redirects, u)
}

// Start runs a provider on listen (a loopback host:port; port 0 picks one) that
// lets people sign in and sends codes only to the redirect URLs given.
func Start(listen string, people []Person, redirectURLs ...string) (*Provider, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("dev OIDC listen address %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("dev OIDC listen address %q: only a loopback address", listen)
	}
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		return nil, err
	}
	p := &Provider{m: m, people: people, redirects: redirectURLs}
	if err := m.AddMiddleware(p.signInForm); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("dev OIDC provider: %w", err)
	}
	if err := m.Start(ln, nil); err != nil {
		ln.Close()
		return nil, err
	}
	return p, nil
}

// Issuer is the provider's issuer URL.
func (p *Provider) Issuer() string { return p.m.Issuer() }

// ClientID and ClientSecret are the one client's credentials, made at Start.
func (p *Provider) ClientID() string     { return p.m.ClientID }
func (p *Provider) ClientSecret() string { return p.m.ClientSecret }

// Stop shuts the provider down.
func (p *Provider) Stop() error {
	err := p.m.Shutdown()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

var formTmpl = template.Must(template.New("form").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in · Portcullis dev identity provider</title></head>
<body>
<main>
<h1>Sign in</h1>
<p>Portcullis development identity provider: demo people only.</p>
{{if .Error}}<p role="alert">{{.Error}}</p>{{end}}
<form method="post" action="{{.Action}}">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">
{{end}}<p><label for="username">Email</label> <input id="username" name="username" autocomplete="username" required></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p>
</form>
<ul>{{range .People}}<li>{{.Email}} ({{.Role}})</li>{{end}}</ul>
</main>
</body>
</html>
`))

// authorizeParams are the authorization request's parameters the form carries on.
var authorizeParams = []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method"}

// signInForm stands in front of mockoidc's authorization endpoint: a GET shows the
// sign-in form, a POST with a demo person's name and password queues that person
// and lets mockoidc issue the code. Other endpoints pass through.
func (p *Provider) signInForm(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != mockoidc.AuthorizationEndpoint {
			next.ServeHTTP(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if !p.redirectAllowed(r.Form.Get("redirect_uri")) {
			http.Error(w, "redirect_uri is not registered with this provider", http.StatusBadRequest)
			return
		}
		params := map[string]string{}
		for _, k := range authorizeParams {
			if v := r.Form.Get(k); v != "" {
				params[k] = v
			}
		}
		if r.Method != http.MethodPost {
			p.render(w, http.StatusOK, params, "")
			return
		}
		person, ok := p.check(r.PostForm.Get("username"), r.PostForm.Get("password"))
		if !ok {
			p.render(w, http.StatusUnauthorized, params, "Unknown email or wrong password.")
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.m.QueueUser(&mockoidc.MockUser{Subject: "demo|" + person.Email, Email: person.Email, EmailVerified: !person.Unverified,
			PreferredUsername: strings.Split(person.Email, "@")[0], Groups: person.Groups})
		next.ServeHTTP(w, r)
	})
}

func (p *Provider) check(username, password string) (Person, bool) {
	for _, person := range p.people {
		if strings.EqualFold(person.Email, strings.TrimSpace(username)) &&
			subtle.ConstantTimeCompare([]byte(person.Password), []byte(password)) == 1 {
			return person, true
		}
	}
	return Person{}, false
}

func (p *Provider) render(w http.ResponseWriter, status int, params map[string]string, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// No form-action: the sign-in's redirects go on to the control plane and, for
	// portcullis login, to the CLI's loopback port, which a browser would check
	// against it.
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = formTmpl.Execute(w, map[string]any{"Action": mockoidc.AuthorizationEndpoint, "Params": params, "Error": msg, "People": p.people})
}
