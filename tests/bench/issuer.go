package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/portcullis-gw/portcullis/shared/identity"
)

const jwksPath = "/.well-known/jwks.json"

// issuer is a minimal JWT issuer: an ES256 key generated at start, its public half served
// as a JWKS, and tokens minted with the claims the data plane requires.
type issuer struct {
	url  string // set once it is served; the tokens' iss
	key  jwk.Key
	jwks []byte
}

func newIssuer() (*issuer, error) {
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	kid, err := randomHex(8)
	if err != nil {
		return nil, err
	}
	for k, v := range map[string]any{jwk.KeyIDKey: kid, jwk.AlgorithmKey: jwa.ES256} {
		if err := key.Set(k, v); err != nil {
			return nil, err
		}
	}
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		return nil, err
	}
	if err := pub.Set(jwk.KeyUsageKey, "sig"); err != nil {
		return nil, err
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, err
	}
	doc, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	return &issuer{key: key, jwks: doc}, nil
}

// ServeHTTP serves the JWKS.
func (i *issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != jwksPath {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(i.jwks)
}

// Mint returns a signed token for client, valid for ttl.
func (i *issuer) Mint(client string, ttl time.Duration) (string, error) {
	jti, err := randomHex(16)
	if err != nil {
		return "", err
	}
	now := time.Now()
	tok, err := jwt.NewBuilder().
		Issuer(i.url).
		Audience([]string{identity.DefaultAudience}).
		Subject(client).
		IssuedAt(now).
		NotBefore(now).
		Expiration(now.Add(ttl)).
		JwtID(jti).
		Claim(identity.ClaimClientID, client).
		Claim(identity.ClaimScope, identity.ScopeLLMAccess).
		Build()
	if err != nil {
		return "", fmt.Errorf("build token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, i.key))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return string(signed), nil
}
