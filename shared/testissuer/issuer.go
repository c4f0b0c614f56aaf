// Package testissuer is the one token issuer of the project's tests and benchmark:
// it generates signing keys when it starts, serves their public halves as a JWKS
// from an HTTP server on 127.0.0.1, counts the fetches, and signs tokens. Keys can be
// added and removed while it runs, to test rotation. Nothing here is used by the
// gateway itself (the control plane's dev issuer is the one make run uses).
package testissuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/portcullis-gw/portcullis/shared/identity"
)

// Audience is the audience tokens are minted for by default.
const Audience = identity.DefaultAudience

// Issuer signs tokens and serves its JWKS. It is safe for concurrent use.
type Issuer struct {
	// Name is the iss claim of minted tokens.
	Name string
	// JWKSURL serves the published public keys.
	JWKSURL string
	// Key is the first published signing key, kid "k1", ES256.
	Key jwk.Key

	srv     *httptest.Server
	fetches atomic.Int64

	mu        sync.Mutex
	published []jwk.Key // public keys
}

// New starts an issuer with one published ES256 key and stops it when t ends.
func New(t testing.TB) *Issuer {
	t.Helper()
	i, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(i.Close)
	return i
}

// Start starts an issuer with one published ES256 key, for a program that is not a
// test (the benchmark); Close stops it.
func Start() (*Issuer, error) {
	i := &Issuer{}
	key, err := newKey("k1")
	if err != nil {
		return nil, err
	}
	if err := i.publish(key); err != nil {
		return nil, err
	}
	i.Key = key
	i.srv = httptest.NewServer(http.HandlerFunc(i.serveJWKS))
	i.Name = i.srv.URL + "/issuer"
	i.JWKSURL = i.srv.URL + "/.well-known/jwks.json"
	return i, nil
}

// Close stops serving the JWKS.
func (i *Issuer) Close() { i.srv.Close() }

// NewKey generates an ES256 private key with key id kid. It is not published.
func NewKey(t testing.TB, kid string) jwk.Key {
	t.Helper()
	key, err := newKey(kid)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newKey(kid string) (jwk.Key, error) {
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	key, err := jwk.FromRaw(raw)
	if err != nil {
		return nil, err
	}
	if err := key.Set(jwk.KeyIDKey, kid); err != nil {
		return nil, err
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.ES256); err != nil {
		return nil, err
	}
	return key, nil
}

// Publish adds the public half of key to the JWKS and returns key.
func (i *Issuer) Publish(t testing.TB, key jwk.Key) jwk.Key {
	t.Helper()
	if err := i.publish(key); err != nil {
		t.Fatal(err)
	}
	return key
}

func (i *Issuer) publish(key jwk.Key) error {
	pub, err := jwk.PublicKeyOf(key)
	if err != nil {
		return err
	}
	i.mu.Lock()
	i.published = append(i.published, pub)
	i.mu.Unlock()
	return nil
}

// Unpublish removes the key with id kid from the JWKS, as an issuer does with a
// compromised key.
func (i *Issuer) Unpublish(kid string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = slices.DeleteFunc(i.published, func(k jwk.Key) bool { return k.KeyID() == kid })
}

// Fetches is how many times the JWKS has been served.
func (i *Issuer) Fetches() int64 { return i.fetches.Load() }

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/.well-known/jwks.json" {
		http.NotFound(w, r)
		return
	}
	i.fetches.Add(1)
	set := jwk.NewSet()
	i.mu.Lock()
	for _, k := range i.published {
		_ = set.AddKey(k)
	}
	i.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// Claims returns valid claims for clientID: iss, aud, sub, client_id, scope
// llm:access, iat, exp in five minutes and a unique jti. Edit the map to break them.
func (i *Issuer) Claims(clientID string) map[string]any {
	now := time.Now()
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	return map[string]any{
		"iss":                  i.Name,
		"aud":                  Audience,
		"sub":                  clientID,
		identity.ClaimClientID: clientID,
		identity.ClaimScope:    identity.ScopeLLMAccess + " other:scope",
		"iat":                  now.Unix(),
		"exp":                  now.Add(5 * time.Minute).Unix(),
		"jti":                  base64.RawURLEncoding.EncodeToString(jti[:]),
	}
}

// Token signs claims with key using the key's own algorithm and key id.
func (i *Issuer) Token(t testing.TB, key jwk.Key, claims map[string]any) string {
	t.Helper()
	return Sign(t, key.Algorithm(), key, key.KeyID(), claims)
}

// TokenWithHeaders is Token with extra protected headers (typ, crit, …), which
// replace the defaults of the same name.
func (i *Issuer) TokenWithHeaders(t testing.TB, key jwk.Key, headers map[string]any, claims map[string]any) string {
	t.Helper()
	signed, err := signWith(key.Algorithm(), key, key.KeyID(), headers, claims)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// Mint returns a token for clientID signed with the issuer's first key, valid for
// ttl: Claims with that expiry. For a program that is not a test.
func (i *Issuer) Mint(clientID string, ttl time.Duration) (string, error) {
	claims := i.Claims(clientID)
	claims["exp"] = time.Now().Add(ttl).Unix()
	return sign(i.Key.Algorithm(), i.Key, i.Key.KeyID(), claims)
}

// Sign signs claims with alg and key (a jwk.Key or raw key material such as an
// HMAC secret), putting kid in the protected header when it is not empty.
func Sign(t testing.TB, alg jwa.KeyAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	signed, err := sign(alg, key, kid, claims)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func sign(alg jwa.KeyAlgorithm, key any, kid string, claims map[string]any) (string, error) {
	return signWith(alg, key, kid, nil, claims)
}

// signWith signs claims with typ JWT, kid (when not empty) and headers in the
// protected header.
func signWith(alg jwa.KeyAlgorithm, key any, kid string, headers, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			return "", err
		}
	}
	if err := hdr.Set(jws.TypeKey, "JWT"); err != nil {
		return "", err
	}
	for k, v := range headers {
		if err := hdr.Set(k, v); err != nil {
			return "", fmt.Errorf("header %s: %w", k, err)
		}
	}
	signed, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return string(signed), nil
}

// Unsigned returns a token with alg "none" and an empty signature.
func Unsigned(t testing.TB, kid string, claims map[string]any) string {
	t.Helper()
	header, err := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": kid})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	return enc(header) + "." + enc(payload) + "."
}

// PublicKeyPEM returns the PEM encoding of key's public half, the bytes an attacker
// would try as an HMAC secret.
func PublicKeyPEM(t testing.TB, key jwk.Key) []byte {
	t.Helper()
	pub, err := jwk.PublicRawKeyOf(key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// Raw returns key's raw private key, which signs without setting a kid header.
func Raw(t testing.TB, key jwk.Key) any {
	t.Helper()
	var raw any
	if err := key.Raw(&raw); err != nil {
		t.Fatal(err)
	}
	return raw
}
