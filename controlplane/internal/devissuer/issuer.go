package devissuer

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/identity"
)

// Token lifetimes.
const (
	DefaultTTL = time.Hour
	MaxTTL     = 24 * time.Hour
)

// Alg is the only signing algorithm the issuer uses.
const Alg = jwa.ES256

const maxClaimLen = 256

// Issuer signs client tokens with one persisted ES256 key. It is immutable after New
// and safe for concurrent use.
type Issuer struct {
	issuer string
	kid    string
	priv   jwk.Key
	public jwk.Set
	now    func() time.Time
}

// New loads the signing key from <dataDir>/jwt-signing-key.pem, creating it on first
// start, and returns an issuer whose tokens carry iss = issuerURL.
func New(dataDir, issuerURL string, log *slog.Logger) (*Issuer, error) {
	issuerURL = strings.TrimRight(issuerURL, "/")
	if issuerURL == "" {
		return nil, fmt.Errorf("dev issuer: issuer URL is required")
	}
	path := filepath.Join(dataDir, KeyFileName)
	raw, created, err := loadOrCreateKey(path)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("dev issuer signing key is readable by group or others", "path", path, "mode", fi.Mode().Perm().String())
	}
	priv, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: %w", err)
	}
	thumb, err := priv.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: key thumbprint: %w", err)
	}
	kid := base64.RawURLEncoding.EncodeToString(thumb)
	for k, v := range map[string]any{jwk.KeyIDKey: kid, jwk.AlgorithmKey: Alg, jwk.KeyUsageKey: jwk.ForSignature} {
		if err := priv.Set(k, v); err != nil {
			return nil, fmt.Errorf("dev issuer: set %s: %w", k, err)
		}
	}
	pub, err := jwk.PublicKeyOf(priv)
	if err != nil {
		return nil, fmt.Errorf("dev issuer: public key: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("dev issuer: %w", err)
	}
	log.Info("dev issuer ready", "issuer", issuerURL, "kid", kid, "key_created", created)
	return &Issuer{issuer: issuerURL, kid: kid, priv: priv, public: set, now: time.Now}, nil
}

// Issuer is the iss claim of every minted token.
func (i *Issuer) Issuer() string { return i.issuer }

// KeyID is the signing key's id: its RFC 7638 SHA-256 thumbprint, base64url.
func (i *Issuer) KeyID() string { return i.kid }

// JWKSURL is where the public key set is served.
func (i *Issuer) JWKSURL() string { return i.issuer + JWKSPath }

// PublicKeys returns the public key set (no private material).
func (i *Issuer) PublicKeys() jwk.Set { return i.public }

// Minted is a signed token and the facts a caller may show about it.
type Minted struct {
	Token     string    `json:"token"`
	JTI       string    `json:"jti"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Mint signs a token for clientID with the given scopes (default llm:access), lifetime
// (0 means DefaultTTL; at most MaxTTL) and audience (default identity.DefaultAudience).
// Bad arguments give an *apierr.Error with code validation_failed naming each field.
func (i *Issuer) Mint(clientID string, scopes []string, ttl time.Duration, audience string) (Minted, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if audience == "" {
		audience = identity.DefaultAudience
	}
	if len(scopes) == 0 {
		scopes = []string{identity.ScopeLLMAccess}
	}
	if err := validateMint(clientID, scopes, ttl, audience); err != nil {
		return Minted{}, err
	}
	jti, err := randomID()
	if err != nil {
		return Minted{}, err
	}
	now := i.now().Truncate(time.Second)
	exp := now.Add(ttl)
	tok, err := jwt.NewBuilder().
		Issuer(i.issuer).
		Audience([]string{audience}).
		Subject(clientID).
		IssuedAt(now).
		NotBefore(now).
		Expiration(exp).
		JwtID(jti).
		Claim(identity.ClaimClientID, clientID).
		Claim(identity.ClaimScope, strings.Join(scopes, " ")).
		Build()
	if err != nil {
		return Minted{}, fmt.Errorf("build token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(Alg, i.priv))
	if err != nil {
		return Minted{}, fmt.Errorf("sign token: %w", err)
	}
	return Minted{Token: string(signed), JTI: jti, ExpiresAt: exp.UTC()}, nil
}

func validateMint(clientID string, scopes []string, ttl time.Duration, audience string) error {
	var fields []apierr.FieldError
	bad := func(field, msg string) { fields = append(fields, apierr.FieldError{Field: field, Message: msg}) }
	if clientID == "" {
		bad("client_id", "required")
	} else if !printable(clientID) {
		bad("client_id", fmt.Sprintf("must be 1-%d printable characters without spaces", maxClaimLen))
	}
	for _, s := range scopes {
		if !scopeToken(s) {
			bad("scope", fmt.Sprintf("%q is not a valid scope token", s))
			break
		}
	}
	if ttl < time.Second || ttl > MaxTTL {
		bad("ttl_seconds", fmt.Sprintf("must be between 1 and %d seconds", int(MaxTTL/time.Second)))
	}
	if !printable(audience) {
		bad("audience", fmt.Sprintf("must be 1-%d printable characters without spaces", maxClaimLen))
	}
	if len(fields) == 0 {
		return nil
	}
	return &apierr.Error{Code: apierr.ValidationFailed, Message: "invalid token request", Fields: fields}
}

// printable reports whether s is 1..maxClaimLen visible ASCII characters.
func printable(s string) bool {
	if s == "" || len(s) > maxClaimLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// scopeToken reports whether s is an RFC 6749 scope-token.
func scopeToken(s string) bool {
	if !printable(s) {
		return false
	}
	return !strings.ContainsAny(s, `"\`)
}

func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
