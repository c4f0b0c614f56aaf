// Package auth verifies the client JWTs presented to the data plane (docs/design.md §4
// step 2): an asymmetric signature by a key from the issuer's JWKS (cached, refreshed,
// rotation honoured), iss, aud, exp and nbf with bounded skew, the client_id claim,
// the llm:access scope, and the token id against the policy's revoked set. Every
// failure is a 401 invalid_token whose internal cause names a Reason; the token itself
// never appears in an error or a log line.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/portcullis-gw/portcullis/shared/identity"
)

// MaxAuthorizationBytes caps the Authorization header; anything longer is rejected
// before it is parsed.
const MaxAuthorizationBytes = 8 << 10

// Skew is the clock skew tolerated on exp, nbf and iat.
const Skew = identity.MaxClockSkewSeconds * time.Second

// allowedAlgs is the allowlist of signature algorithms: asymmetric ones only, so
// neither "none" nor an HMAC keyed with a public key can pass.
var allowedAlgs = map[jwa.SignatureAlgorithm]bool{
	jwa.RS256: true, jwa.RS384: true, jwa.RS512: true,
	jwa.PS256: true, jwa.PS384: true, jwa.PS512: true,
	jwa.ES256: true, jwa.ES384: true, jwa.ES512: true,
	jwa.EdDSA: true,
}

// Config configures a Verifier.
type Config struct {
	Issuer   string // required iss
	Audience string // required aud
	JWKSURL  string // the issuer's JWKS
	// HTTPClient fetches the JWKS; the default times out after 10s. Either way it
	// follows no redirect and reads at most MaxJWKSBytes of an answer.
	HTTPClient *http.Client
	// RefreshInterval is how often the JWKS is refetched in the background;
	// default 5 minutes.
	RefreshInterval time.Duration
	// ForcedRefreshGap is the least time between two refetches forced by an unknown
	// key id; default 5 seconds.
	ForcedRefreshGap time.Duration
	// TokenCacheSize is how many verified tokens are remembered, so that a token
	// presented again skips the signature check; 0 means DefaultTokenCacheSize and
	// a negative value turns the cache off. A remembered token is still refused once
	// it expires, once its jti is in the Revocations passed to Verify, and once the
	// JWKS it was checked against has been refreshed (then it is verified afresh).
	TokenCacheSize int

	// The extras of RFC 8725 (JWT best current practices), safe by default:
	//
	// AllowMissingJTI accepts tokens without a jti; off by default, because such a
	// token cannot be revoked on its own.
	AllowMissingJTI bool
	// MaxLifetime caps a token's lifetime, exp - iat (exp - now when it has no iat);
	// 0 means DefaultMaxLifetime and a negative value turns the cap off.
	MaxLifetime time.Duration
	// RequiredType, when set, is the typ header every token must carry, e.g.
	// "at+jwt" (RFC 9068); compared without case and without an "application/"
	// prefix. Empty: typ is not checked.
	RequiredType string
}

// DefaultMaxLifetime is the longest token lifetime accepted unless Config says
// otherwise.
const DefaultMaxLifetime = 24 * time.Hour

// Revocations is the set of revoked token ids.
type Revocations interface {
	Revoked(jti string) bool
}

// Identity is what a verified token says about its caller.
type Identity struct {
	ClientID string
	Subject  string
	TokenID  string // jti, may be empty
	Scopes   []string
}

// Expectations are what a token's claims must say: its issuer and audience, and
// claims it must carry beyond exp, client_id and scope. The policy sets them
// (policy.AuthSettings), so that they change without a restart.
type Expectations struct {
	Issuer, Audience string
	RequireClaims    []string
}

// Verifier checks bearer tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    Config
	keys   *keySet
	tokens *tokenCache      // nil when the cache is off
	now    func() time.Time // the clock exp, nbf and iat are checked against
	// expect is what tokens are checked against now; a remembered verdict holds
	// only under the same one.
	expect atomic.Pointer[Expectations]
}

// Expect makes tokens be checked against e from now on: an empty Issuer or Audience
// is Config's. A token remembered under other expectations is verified afresh.
func (v *Verifier) Expect(e Expectations) {
	if e.Issuer == "" {
		e.Issuer = v.cfg.Issuer
	}
	if e.Audience == "" {
		e.Audience = v.cfg.Audience
	}
	if cur := v.expect.Load(); cur != nil && cur.Issuer == e.Issuer && cur.Audience == e.Audience &&
		slices.Equal(cur.RequireClaims, e.RequireClaims) {
		return // unchanged: remembered verdicts still hold
	}
	e.RequireClaims = slices.Clone(e.RequireClaims)
	v.expect.Store(&e)
}

// NewVerifier returns a Verifier whose JWKS cache refreshes in the background until
// ctx is done. The JWKS is first fetched by the first Verify.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if err := CheckJWKSURL(cfg.JWKSURL); err != nil {
		return nil, fmt.Errorf("JWKS URL %q: %w", cfg.JWKSURL, err)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}

	if cfg.RefreshInterval <= 0 {
		cfg.RefreshInterval = 5 * time.Minute
	}
	if cfg.ForcedRefreshGap <= 0 {
		cfg.ForcedRefreshGap = 5 * time.Second
	}
	if cfg.TokenCacheSize == 0 {
		cfg.TokenCacheSize = DefaultTokenCacheSize
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	ks, err := newKeySet(ctx, cfg.JWKSURL, guardedClient(cfg.HTTPClient), cfg.RefreshInterval, cfg.ForcedRefreshGap)
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, keys: ks, tokens: newTokenCache(cfg.TokenCacheSize), now: time.Now}
	v.expect.Store(&Expectations{Issuer: cfg.Issuer, Audience: cfg.Audience})
	return v, nil
}

// Verify checks the Authorization header value and returns the caller's identity.
// revoked may be nil. A token verified before is answered from the token cache
// (Config.TokenCacheSize) once its time claims, the JWKS in use and revoked have
// been checked again. Every error is an *apierr.Error with code invalid_token whose
// cause is a *RejectedError.
func (v *Verifier) Verify(ctx context.Context, authorization string, revoked Revocations) (Identity, error) {
	if len(authorization) > MaxAuthorizationBytes {
		return Identity{}, reject(ReasonHeaderTooLarge)
	}
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, reject(ReasonMissing)
	}
	if !isCompactJWS(token) {
		return Identity{}, reject(ReasonMalformed)
	}
	digest := tokenDigest(sha256.Sum256([]byte(token)))
	if vt, ok := v.tokens.get(digest); ok {
		if vt.expect == v.expect.Load() && v.stillValid(ctx, vt) {
			if vt.id.TokenID != "" && revoked != nil && revoked.Revoked(vt.id.TokenID) {
				return Identity{}, reject(ReasonRevoked)
			}
			return vt.identity(), nil
		}
		v.tokens.remove(digest) // expired, the JWKS or the expectations changed: verify afresh
	}
	id, vt, err := v.verify(ctx, token, revoked)
	if err != nil {
		return Identity{}, err
	}
	if vt != nil {
		v.tokens.put(digest, vt)
	}
	return id, nil
}

// stillValid reports whether a remembered verdict holds now: the token's time
// claims still let it through and the JWKS it was checked against is still the one
// in use.
func (v *Verifier) stillValid(ctx context.Context, vt *verifiedToken) bool {
	if !vt.timely(v.now()) {
		return false
	}
	set, err := v.keys.current(ctx)
	return err == nil && set == vt.keys
}

// verify is the full check of a compact JWS token: signature, claims and
// revocation. On success it also returns what the token cache may remember, or nil.
func (v *Verifier) verify(ctx context.Context, token string, revoked Revocations) (Identity, *verifiedToken, error) {
	msg, err := jws.Parse([]byte(token), jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return Identity{}, nil, reject(ReasonMalformed)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	alg := hdr.Algorithm()
	if !allowedAlgs[alg] {
		return Identity{}, nil, reject(ReasonAlgNotAllowed)
	}
	if len(hdr.Critical()) > 0 { // no extension is understood, so none may be critical
		return Identity{}, nil, reject(ReasonCritical)
	}
	if want := v.cfg.RequiredType; want != "" && !sameType(hdr.Type(), want) {
		return Identity{}, nil, reject(ReasonWrongType)
	}
	kid := hdr.KeyID()
	if kid == "" {
		return Identity{}, nil, reject(ReasonMissingKeyID)
	}
	key, set, reason := v.keys.lookup(ctx, kid)
	if reason != "" {
		return Identity{}, nil, reject(reason)
	}
	if ka := key.Algorithm(); ka != nil && ka.String() != "" && ka.String() != alg.String() {
		return Identity{}, nil, reject(ReasonKeyAlgMismatch)
	}
	expect := v.expect.Load()
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKey(alg, key),
		jwt.WithValidate(true),
		jwt.WithIssuer(expect.Issuer),
		jwt.WithAudience(expect.Audience),
		jwt.WithAcceptableSkew(Skew),
		jwt.WithClock(jwt.ClockFunc(v.now)),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
	)
	if err != nil {
		return Identity{}, nil, reject(parseReason(err))
	}
	if tok.Expiration().Unix() == 0 {
		// jwt.Validate treats exp 0 as absent, which would make the token valid forever.
		return Identity{}, nil, reject(ReasonMissingExpiry)
	}
	clientID, _ := claim(tok, identity.ClaimClientID).(string)
	if strings.TrimSpace(clientID) == "" {
		return Identity{}, nil, reject(ReasonMissingClientID)
	}
	scopes, ok := scopeList(claim(tok, identity.ClaimScope))
	if !ok || !slices.Contains(scopes, identity.ScopeLLMAccess) {
		return Identity{}, nil, reject(ReasonMissingScope)
	}
	if limit := v.cfg.MaxLifetime; limit > 0 {
		from := tok.IssuedAt()
		if from.IsZero() {
			from = v.now()
		}
		if tok.Expiration().Sub(from) > limit {
			return Identity{}, nil, reject(ReasonLifetime)
		}
	}
	for _, c := range expect.RequireClaims {
		if claim(tok, c) == nil {
			return Identity{}, nil, reject(ReasonMissingClaim)
		}
	}
	jti := tok.JwtID()
	if jti == "" && !v.cfg.AllowMissingJTI {
		return Identity{}, nil, reject(ReasonMissingJTI)
	}
	if jti != "" && revoked != nil && revoked.Revoked(jti) {
		return Identity{}, nil, reject(ReasonRevoked)
	}
	id := Identity{ClientID: clientID, Subject: tok.Subject(), TokenID: jti, Scopes: scopes}
	vt, ok := newVerifiedToken(id, set, tok)
	if !ok {
		return id, nil, nil
	}
	vt.expect = expect
	return vt.identity(), vt, nil
}

// parseReason maps a jwt.Parse error to a Reason.
func parseReason(err error) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired()):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotYetValid()), errors.Is(err, jwt.ErrInvalidIssuedAt()):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrInvalidIssuer()):
		return ReasonWrongIssuer
	case errors.Is(err, jwt.ErrInvalidAudience()):
		return ReasonWrongAudience
	case errors.Is(err, jwt.ErrRequiredClaim()):
		return ReasonMissingExpiry
	case jws.IsVerificationError(err):
		return ReasonBadSignature
	case jwt.IsValidationError(err):
		return ReasonInvalidClaims
	default:
		return ReasonMalformed
	}
}

func claim(tok jwt.Token, name string) any {
	v, _ := tok.Get(name)
	return v
}

// scopeList reads a scope claim: a space-separated string (RFC 8693) or a JSON
// array of strings.
func scopeList(v any) ([]string, bool) {
	switch s := v.(type) {
	case string:
		return strings.Fields(s), true
	case []any:
		out := make([]string, 0, len(s))
		for _, item := range s {
			str, ok := item.(string)
			if !ok {
				return nil, false
			}
			out = append(out, str)
		}
		return out, true
	case []string:
		return s, true
	}
	return nil, false
}

// isCompactJWS reports whether s has the shape header.payload.signature with only
// base64url characters, so JSON-serialized JWS and JWE are refused before parsing.
func isCompactJWS(s string) bool {
	dots := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			dots++
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// sameType reports whether the typ header got names the media type want, as RFC
// 8725 compares them: without case, and with "application/" optional.
func sameType(got, want string) bool {
	norm := func(s string) string {
		return strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "application/")
	}
	return norm(got) == norm(want)
}
