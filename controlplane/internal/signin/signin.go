// Package signin signs people in to the console and the CLI with OpenID Connect:
// the authorization code flow with PKCE (coreos/go-oidc and golang.org/x/oauth2),
// the identity provider's role claim mapped to role bindings, and server-side
// sessions in Postgres behind an HttpOnly, SameSite=Strict cookie with an idle and
// an absolute timeout. `portcullis login` signs in through the same flow and gets a
// short-lived API token back on a loopback redirect (RFC 8252), with a PKCE of its
// own binding the token to the CLI that asked.
//
// Routes: GET /auth/login, GET /auth/callback, POST /auth/logout,
// GET /auth/cli/login and POST /auth/cli/token.
package signin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// Paths of the sign-in routes.
const (
	LoginPath    = "/auth/login"
	CallbackPath = "/auth/callback"
	LogoutPath   = "/auth/logout"
	CLILoginPath = "/auth/cli/login"
	CLITokenPath = "/auth/cli/token"
)

// loginCookie ties a callback to the browser that started the sign-in, so that
// nobody can make a victim's browser finish a sign-in of theirs (login CSRF). It is
// SameSite=Lax: the identity provider's redirect is a cross-site navigation, which
// a Strict cookie would not come back with.
const loginCookie = "pc_login"

// How long the parts of a sign-in live.
const (
	loginTTL    = 10 * time.Minute // from /auth/login to the callback
	exchangeTTL = 2 * time.Minute  // from the CLI's redirect to its token request
)

// Defaults of Config.
const (
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxAge      = 12 * time.Hour
	DefaultCLITokenTTL = 12 * time.Hour
)

// Config is how the control plane signs people in.
type Config struct {
	Issuer       string // the identity provider's issuer URL
	ClientID     string
	ClientSecret string
	RedirectURL  string   // <public URL>/auth/callback, registered at the identity provider
	Scopes       []string // besides openid
	// RoleClaim names the ID token claim whose values RoleMap maps to roles;
	// NameClaim the claim that names the principal (falling back to
	// preferred_username, then email, then the subject).
	RoleClaim, NameClaim string
	RoleMap              RoleMap
	// IdleTimeout ends a session unused this long; MaxAge ends any session this long
	// after sign-in. CLITokenTTL is the life of the API token `portcullis login` gets.
	IdleTimeout, MaxAge, CLITokenTTL time.Duration
	// SecureCookies marks the cookies Secure: off only for a control plane on
	// loopback plain HTTP (development).
	SecureCookies bool
	// HTTPClient calls the identity provider; nil uses one with a 10 s timeout.
	HTTPClient *http.Client
}

// Service serves the sign-in routes. It is safe for concurrent use.
type Service struct {
	cfg Config
	st  *store.Store
	log *slog.Logger

	mu       sync.Mutex // guards the fields below, set on the first successful discovery
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// New returns the sign-in service. The identity provider is discovered on the first
// sign-in (and again until that succeeds), so that the control plane starts, and
// API tokens work, while it is down.
func New(cfg Config, st *store.Store, log *slog.Logger) *Service {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.CLITokenTTL <= 0 {
		cfg.CLITokenTTL = DefaultCLITokenTTL
	}
	return &Service{cfg: cfg, st: st, log: log}
}

// Register adds the sign-in routes to e.
func (s *Service) Register(e *echo.Echo) {
	e.GET(LoginPath, s.login)
	e.GET(CallbackPath, s.callback)
	e.POST(LogoutPath, s.logout)
	e.GET(CLILoginPath, s.cliLogin)
	e.POST(CLITokenPath, s.cliToken)
}

// provider returns the OAuth 2 configuration and the ID token verifier, discovering
// the identity provider the first time.
func (s *Service) provider(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.oauth != nil {
		return s.oauth, s.verifier, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, s.cfg.HTTPClient), s.cfg.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("discover the identity provider %s: %w", s.cfg.Issuer, err)
	}
	s.oauth = &oauth2.Config{
		ClientID: s.cfg.ClientID, ClientSecret: s.cfg.ClientSecret, RedirectURL: s.cfg.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: append([]string{oidc.ScopeOpenID}, s.cfg.Scopes...),
	}
	s.verifier = p.VerifierContext(oidc.ClientContext(context.WithoutCancel(ctx), s.cfg.HTTPClient),
		&oidc.Config{ClientID: s.cfg.ClientID})
	return s.oauth, s.verifier, nil
}

// random returns n random bytes, base64url.
func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

func hash(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// login answers GET /auth/login?return_to=/path: it starts a sign-in and sends the
// browser to the identity provider.
func (s *Service) login(c echo.Context) error {
	return s.start(c, store.Login{ReturnTo: localPath(c.QueryParam("return_to"))})
}

// cliState and cliChallenge are what a CLI's state and PKCE challenge look like.
var (
	cliState     = regexp.MustCompile(`^[A-Za-z0-9_-]{16,128}$`)
	cliChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// cliLogin answers GET /auth/cli/login?port=&state=&code_challenge=&code_challenge_method=S256:
// a sign-in whose end is a redirect to the CLI's loopback listener.
func (s *Service) cliLogin(c echo.Context) error {
	port, err := strconv.Atoi(c.QueryParam("port"))
	switch {
	case err != nil || port < 1024 || port > 65535:
		return page(c, http.StatusBadRequest, "Sign-in refused", "port must be the CLI's loopback port, 1024 to 65535.")
	case !cliState.MatchString(c.QueryParam("state")):
		return page(c, http.StatusBadRequest, "Sign-in refused", "state must be 16 to 128 URL-safe characters.")
	case c.QueryParam("code_challenge_method") != "S256" || !cliChallenge.MatchString(c.QueryParam("code_challenge")):
		return page(c, http.StatusBadRequest, "Sign-in refused", "code_challenge must be an S256 PKCE challenge.")
	}
	return s.start(c, store.Login{CLIPort: port, CLIState: c.QueryParam("state"), CLIChallenge: c.QueryParam("code_challenge")})
}

// start stores the sign-in l and redirects to the identity provider.
func (s *Service) start(c echo.Context, l store.Login) error {
	ctx := c.Request().Context()
	oauth, _, err := s.provider(ctx)
	if err != nil {
		s.log.Error("sign-in: identity provider unavailable", "err", err)
		return page(c, http.StatusServiceUnavailable, "Sign-in unavailable", "The identity provider cannot be reached; try again shortly.")
	}
	browser := random(32)
	l.State, l.Nonce, l.Verifier = random(24), random(24), oauth2.GenerateVerifier()
	l.BrowserHash = hash(browser)
	l.ExpiresAt = time.Now().Add(loginTTL)
	if l.ReturnTo == "" {
		l.ReturnTo = "/"
	}
	if err := s.st.CreateLogin(ctx, l); err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: loginCookie, Value: browser, Path: "/auth/", MaxAge: int(loginTTL / time.Second),
		HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
	url := oauth.AuthCodeURL(l.State, oidc.Nonce(l.Nonce), oauth2.S256ChallengeOption(l.Verifier))
	return c.Redirect(http.StatusFound, url)
}

// callback answers the identity provider's redirect: it checks the sign-in,
// exchanges the code, verifies the ID token, maps its role claim and makes the
// session (or, for the CLI, the one-time exchange code).
func (s *Service) callback(c echo.Context) error {
	ctx := c.Request().Context()
	if e := c.QueryParam("error"); e != "" {
		return page(c, http.StatusForbidden, "Sign-in refused", "The identity provider said: "+truncate(e, 100)+".")
	}
	l, err := s.st.TakeLogin(ctx, c.QueryParam("state"))
	if errors.Is(err, store.ErrNotFound) {
		return page(c, http.StatusBadRequest, "Sign-in expired", "This sign-in is unknown, used or expired; start again.")
	}
	if err != nil {
		return err
	}
	cookie, err := c.Cookie(loginCookie)
	if err != nil || subtle.ConstantTimeCompare(hash(cookie.Value), l.BrowserHash) != 1 {
		return page(c, http.StatusBadRequest, "Sign-in refused", "This sign-in was started in another browser; start again here.")
	}
	c.SetCookie(&http.Cookie{Name: loginCookie, Value: "", Path: "/auth/", MaxAge: -1, HttpOnly: true,
		Secure: s.cfg.SecureCookies, SameSite: http.SameSiteLaxMode})
	oauth, verifier, err := s.provider(ctx)
	if err != nil {
		return page(c, http.StatusServiceUnavailable, "Sign-in unavailable", "The identity provider cannot be reached; try again shortly.")
	}
	idctx := oidc.ClientContext(ctx, s.cfg.HTTPClient)
	tok, err := oauth.Exchange(idctx, c.QueryParam("code"), oauth2.VerifierOption(l.Verifier))
	if err != nil {
		s.log.Warn("sign-in: code exchange failed", "err", err)
		return page(c, http.StatusBadGateway, "Sign-in failed", "The identity provider did not accept the sign-in; start again.")
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := verifier.Verify(idctx, raw)
	if err != nil || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(l.Nonce)) != 1 {
		s.log.Warn("sign-in: ID token refused", "err", err)
		return page(c, http.StatusBadGateway, "Sign-in failed", "The identity provider's ID token did not verify; start again.")
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return page(c, http.StatusBadGateway, "Sign-in failed", "The ID token's claims are unreadable.")
	}
	name, mayLink := s.principalName(claims, idt.Subject)
	id := store.OIDCIdentity{Issuer: idt.Issuer, Subject: idt.Subject, Name: name, MayLink: mayLink,
		Email: verifiedEmail(claims), DisplayName: claimString(claims, "name")}
	bindings := s.cfg.RoleMap.Bindings(claims[s.cfg.RoleClaim])
	actor := store.Actor{Principal: id.Name, Kind: store.PrincipalPerson, Roles: rolesOf(bindings), Credential: "oidc",
		Source: c.RealIP(), RequestID: c.Response().Header().Get(echo.HeaderXRequestID)}
	ctx = store.WithActor(ctx, actor)
	c.SetRequest(c.Request().WithContext(ctx)) // the session, or CLI sign-in, is recorded as the person's
	p, err := s.st.SignIn(ctx, id, bindings)
	switch {
	case errors.Is(err, store.ErrNameTaken):
		return page(c, http.StatusForbidden, "Sign-in refused", "The name "+id.Name+" belongs to another principal; ask an administrator.")
	case errors.Is(err, store.ErrDisabled):
		return page(c, http.StatusForbidden, "Sign-in refused", "Your principal is disabled.")
	case errors.Is(err, store.ErrNoRole):
		p = store.Principal{Name: id.Name}
	case err != nil:
		return err
	}
	if len(p.Roles) == 0 {
		return page(c, http.StatusForbidden, "No access", "You signed in as "+p.Name+", who holds no Portcullis role. "+
			"Ask an administrator for one, or to be added to a group the control plane maps to a role.")
	}
	if l.CLIPort != 0 {
		return s.finishCLI(c, l, p.Name)
	}
	return s.startSession(c, p, l.ReturnTo)
}

// startSession makes p's console session, sets its cookie and sends the browser
// on to returnTo.
func (s *Service) startSession(c echo.Context, p store.Principal, returnTo string) error {
	token := adminauth.SessionTokenPrefix + random(32)
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	sess := store.Session{ID: "ses_" + hex.EncodeToString(idb[:]), Principal: p.Name, CSRFToken: random(32),
		Source: c.RealIP(), IdleTimeout: s.cfg.IdleTimeout, ExpiresAt: time.Now().Add(s.cfg.MaxAge)}
	ctx := c.Request().Context()
	if err := s.st.CreateSession(ctx, sess, adminauth.Hash(token)); err != nil {
		return err
	}
	c.SetCookie(&http.Cookie{Name: adminauth.SessionCookie, Value: token, Path: "/", MaxAge: int(s.cfg.MaxAge / time.Second),
		HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteStrictMode})
	// A page, not a redirect: the browser came here from the identity provider, a
	// cross-site navigation, and would not send the Strict cookie on a redirect
	// that continues it; a refresh from this page is same-site.
	return continuePage(c, returnTo)
}

// finishCLI sends the browser to the CLI's loopback listener with a one-time code.
func (s *Service) finishCLI(c echo.Context, l store.Login, principal string) error {
	code := random(32)
	if err := s.st.CompleteCLILogin(c.Request().Context(), l, principal, hash(code), time.Now().Add(exchangeTTL)); err != nil {
		return err
	}
	target := fmt.Sprintf("http://127.0.0.1:%d/callback?code=%s&state=%s", l.CLIPort, code, l.CLIState)
	return c.Redirect(http.StatusSeeOther, target)
}

// cliToken answers POST /auth/cli/token {"code", "code_verifier"}: the CLI's API
// token, once, for the code its loopback listener got and the verifier of the
// challenge it started with.
func (s *Service) cliToken(c echo.Context) error {
	var req struct {
		Code     string `json:"code"`
		Verifier string `json:"code_verifier"`
	}
	if err := (&echo.DefaultBinder{}).BindBody(c, &req); err != nil || req.Code == "" || req.Verifier == "" {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": "invalid_request"})
	}
	ctx := c.Request().Context()
	l, err := s.st.TakeCLIExchange(ctx, hash(req.Code))
	if errors.Is(err, store.ErrNotFound) {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
	}
	if err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(oauth2.S256ChallengeFromVerifier(req.Verifier)), []byte(l.CLIChallenge)) != 1 {
		return c.JSON(http.StatusBadRequest, map[string]string{"error": "invalid_grant"})
	}
	p, err := s.st.Principal(ctx, l.Principal)
	if err != nil {
		return err
	}
	ctx = store.WithActor(ctx, store.Actor{Principal: p.Name, Kind: p.Kind, Roles: rolesOf(p.Roles), Credential: "oidc-cli",
		Source: c.RealIP(), RequestID: c.Response().Header().Get(echo.HeaderXRequestID)})
	token, tokHash, id := adminauth.NewAPIToken()
	t, err := s.st.CreateAPIToken(ctx, store.APIToken{ID: id, Principal: p.Name, Name: "portcullis login",
		CreatedBy: p.Name, ExpiresAt: time.Now().Add(s.cfg.CLITokenTTL).Truncate(time.Second)}, tokHash)
	if err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]any{"token": token, "id": t.ID, "principal": t.Principal, "expires_at": t.ExpiresAt})
}

// logout answers POST /auth/logout: the session ends, and its cookie goes. The form
// (or header) must carry the session's CSRF token.
func (s *Service) logout(c echo.Context) error {
	ctx := c.Request().Context()
	cookie, err := c.Cookie(adminauth.SessionCookie)
	if err == nil {
		a, err := s.st.AuthenticateSession(ctx, adminauth.Hash(cookie.Value))
		if err == nil {
			given := c.Request().Header.Get(adminauth.CSRFHeader)
			if given == "" {
				given = c.FormValue("csrf")
			}
			if subtle.ConstantTimeCompare([]byte(given), []byte(a.Session.CSRFToken)) != 1 {
				return page(c, http.StatusForbidden, "Sign-out refused", "The sign-out form is stale; reload the page and try again.")
			}
			ctx = store.WithActor(ctx, store.Actor{Principal: a.Principal.Name, Kind: a.Principal.Kind,
				Roles: rolesOf(a.Principal.Roles), Credential: "session:" + a.Session.ID, Source: c.RealIP(),
				RequestID: c.Response().Header().Get(echo.HeaderXRequestID)})
			if err := s.st.DeleteSession(ctx, adminauth.Hash(cookie.Value)); err != nil {
				return err
			}
		}
	}
	c.SetCookie(&http.Cookie{Name: adminauth.SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.cfg.SecureCookies, SameSite: http.SameSiteStrictMode})
	return c.Redirect(http.StatusSeeOther, "/")
}

// principalName is the principal name the claims give, lowercased: NameClaim, then
// preferred_username, email, the subject; an email only when email_verified is
// true. mayLink says it came from NameClaim, so that it may claim a person an
// administrator made ahead of the first sign-in: a fallback name, which the person
// may often choose at the identity provider, never does.
func (s *Service) principalName(claims map[string]any, subject string) (string, bool) {
	for i, k := range []string{s.cfg.NameClaim, "preferred_username", "email"} {
		v := claimString(claims, k)
		if k == "email" {
			v = verifiedEmail(claims)
		}
		if v != "" {
			return strings.ToLower(v), i == 0
		}
	}
	return strings.ToLower(subject), false
}

// verifiedEmail is the email claim if email_verified is true, else "".
func verifiedEmail(claims map[string]any) string {
	if ok, _ := claims["email_verified"].(bool); !ok {
		return ""
	}
	return claimString(claims, "email")
}

func claimString(claims map[string]any, k string) string {
	v, _ := claims[k].(string)
	return strings.TrimSpace(v)
}

func rolesOf(bindings []store.RoleBinding) string {
	parts := make([]string, 0, len(bindings))
	for _, b := range bindings {
		if b.Tenant != "" {
			parts = append(parts, b.Role+":"+b.Tenant)
		} else {
			parts = append(parts, b.Role)
		}
	}
	return strings.Join(parts, ",")
}

// safePath is what a return_to may be: a path (and query) of printable ASCII with
// no backslash, starting with one "/". Browsers strip tabs and newlines from URLs
// and read "\\" as "/", so anything else could turn "/x" into "//host".
var safePath = regexp.MustCompile(`^/[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$`)

// localPath is p if it is a path on this server, else "/": a sign-in never sends
// the browser elsewhere.
func localPath(p string) string {
	if !safePath.MatchString(p) || strings.HasPrefix(p, "//") {
		return "/"
	}
	if u, err := url.Parse(p); err != nil || u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return "/"
	}
	return p
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
