package adminauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// Token prefixes, so that secret scanners can recognise each kind: "pca_" the
// bootstrap and break-glass admin tokens (package admintoken), "pct_" API tokens.
const (
	AdminTokenPrefix   = "pca_"
	APITokenPrefix     = "pct_"
	SessionTokenPrefix = "pcs_"
)

// SessionCookie is the console session's cookie; CSRFHeader the header that must
// carry the session's CSRF token on every state-changing request made with it.
const (
	SessionCookie = "pc_session"
	CSRFHeader    = "X-CSRF-Token"
)

// maxHeader bounds the Authorization header we are willing to hash.
const maxHeader = 512

// Store is what authentication reads.
type Store interface {
	AuthenticateToken(ctx context.Context, hash []byte) (store.TokenAuth, error)
	AdminTokenKind(ctx context.Context, hash []byte) (string, error)
	AuthenticateSession(ctx context.Context, hash []byte) (store.SessionAuth, error)
}

var _ Store = (*store.Store)(nil)

// identityKey is where the middleware keeps the request's *Identity in the echo
// context.
const identityKey = "portcullis.identity"

// IdentityOf returns the identity the request authenticated as; nil before
// Authenticate ran.
func IdentityOf(c echo.Context) *Identity {
	id, _ := c.Get(identityKey).(*Identity)
	return id
}

// Hash is the stored form of a token: its SHA-256.
func Hash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// NewAPIToken returns a fresh API token, its stored hash and its public id. The
// token carries 256 random bits.
func NewAPIToken() (token string, hash []byte, id string) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	token = APITokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	var idb [8]byte
	_, _ = rand.Read(idb[:])
	return token, Hash(token), "tok_" + hex.EncodeToString(idb[:])
}

// Authenticate admits a request only if it carries "Authorization: Bearer <token>"
// with a live API token of an enabled principal, or an admin token; otherwise it
// fails with 401 "unauthorized". It keeps the caller's *Identity for IdentityOf and
// puts the actor every write is recorded as into the request's context
// (store.WithActor). Tokens are looked up by their SHA-256: they carry 256 bits of
// entropy, so the lookup's timing reveals nothing useful about any token.
func Authenticate(st Store) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			id, err := identify(c, st)
			if err != nil {
				return err
			}
			Admit(c, id)
			return next(c)
		}
	}
}

// Admit makes id the request's identity: IdentityOf returns it and the request's
// context carries its actor.
func Admit(c echo.Context, id *Identity) {
	c.Set(identityKey, id)
	req := c.Request()
	actor := store.Actor{
		Principal: id.Principal, Kind: id.Kind, Roles: id.RolesString(), Credential: id.Credential(),
		Source: c.RealIP(), RequestID: c.Response().Header().Get(echo.HeaderXRequestID),
	}
	c.SetRequest(req.WithContext(store.WithActor(req.Context(), actor)))
}

func identify(c echo.Context, st Store) (*Identity, error) {
	header := c.Request().Header.Get(echo.HeaderAuthorization)
	if header == "" {
		if cookie, err := c.Cookie(SessionCookie); err == nil {
			return sessionIdentity(c, st, cookie.Value)
		}
	}
	token, ok := bearer(header)
	if !ok {
		return nil, unauthorized(c, "missing or invalid admin token")
	}
	ctx := c.Request().Context()
	switch {
	case strings.HasPrefix(token, AdminTokenPrefix):
		kind, err := st.AdminTokenKind(ctx, Hash(token))
		if errors.Is(err, store.ErrNotFound) {
			return nil, unauthorized(c, "missing or invalid admin token")
		}
		if err != nil {
			return nil, apierr.Wrap(apierr.Internal, err, "internal error")
		}
		if kind == store.AdminTokenBreakGlass {
			return BreakGlassIdentity(), nil
		}
		return BootstrapIdentity(), nil
	case strings.HasPrefix(token, APITokenPrefix):
		a, err := st.AuthenticateToken(ctx, Hash(token))
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, unauthorized(c, "invalid, expired or revoked API token")
		case errors.Is(err, store.ErrDisabled):
			return nil, unauthorized(c, "the token's principal is disabled")
		case err != nil:
			return nil, apierr.Wrap(apierr.Internal, err, "internal error")
		}
		id := NewIdentity(a.Principal.Name, a.Principal.Kind, CredToken, a.Token.ID, a.Principal.Roles, a.Token.Role)
		id.CredentialExpires = a.Token.ExpiresAt
		return id, nil
	}
	return nil, unauthorized(c, "missing or invalid admin token")
}

// sessionIdentity authenticates a console session's cookie. A state-changing
// request must also carry the session's CSRF token in X-CSRF-Token: the cookie goes
// with every request the browser makes, the token only with those the console's own
// pages make.
func sessionIdentity(c echo.Context, st Store, token string) (*Identity, error) {
	if len(token) > maxHeader {
		return nil, unauthorized(c, "invalid or expired session")
	}
	a, err := st.AuthenticateSession(c.Request().Context(), Hash(token))
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrDisabled):
		return nil, unauthorized(c, "invalid or expired session; sign in again")
	case err != nil:
		return nil, apierr.Wrap(apierr.Internal, err, "internal error")
	}
	switch c.Request().Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		given := c.Request().Header.Get(CSRFHeader)
		if subtle.ConstantTimeCompare([]byte(given), []byte(a.Session.CSRFToken)) != 1 {
			return nil, apierr.New(apierr.CSRFFailed, "a request with a session cookie that changes something needs the session's %s header", CSRFHeader)
		}
	}
	return NewIdentity(a.Principal.Name, a.Principal.Kind, CredSession, a.Session.ID, a.Principal.Roles, ""), nil
}

func bearer(header string) (string, bool) {
	if len(header) > maxHeader {
		return "", false
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(token), true
}

func unauthorized(c echo.Context, msg string) error {
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="portcullis-admin"`)
	return apierr.New(apierr.Unauthorized, "%s", msg)
}
