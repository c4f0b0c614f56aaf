package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
)

type revokedSet map[string]bool

func (r revokedSet) Revoked(jti string) bool { return r[jti] }

func newVerifier(t testing.TB, iss *testissuer.Issuer, gap time.Duration) *auth.Verifier {
	t.Helper()
	v, err := auth.NewVerifier(t.Context(), auth.Config{
		Issuer: iss.Name, Audience: testissuer.Audience, JWKSURL: iss.JWKSURL, ForcedRefreshGap: gap,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func reasonOf(t *testing.T, err error) auth.Reason {
	t.Helper()
	var e *apierr.Error
	if !errors.As(err, &e) || e.Code != apierr.InvalidToken {
		t.Fatalf("error %v is not invalid_token", err)
	}
	var r *auth.RejectedError
	if !errors.As(err, &r) {
		t.Fatalf("error %v has no RejectedError cause", err)
	}
	return r.Reason
}

func TestVerifyReasons(t *testing.T) {
	iss := testissuer.New(t)
	v := newVerifier(t, iss, time.Hour)
	claims := func(edit func(map[string]any)) map[string]any {
		c := iss.Claims("app-1")
		if edit != nil {
			edit(c)
		}
		return c
	}
	mismatched := testissuer.NewKey(t, "k-mismatch")
	if err := mismatched.Set(jwk.AlgorithmKey, jwa.ES384); err != nil {
		t.Fatal(err)
	}
	iss.Publish(t, mismatched)

	tests := []struct {
		name  string
		authz string
		want  auth.Reason // "" means accepted
	}{
		{name: "valid", authz: "Bearer " + iss.Token(t, iss.Key, claims(nil))},
		{name: "scheme is case-insensitive", authz: "bearer " + iss.Token(t, iss.Key, claims(nil))},
		{name: "scope as JSON array", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["scope"] = []string{"a", "llm:access"} }))},
		{name: "nbf within skew", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["nbf"] = time.Now().Add(10 * time.Second).Unix() }))},
		{name: "expired within skew", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["exp"] = time.Now().Add(-10 * time.Second).Unix() }))},
		{name: "no header", authz: "", want: auth.ReasonMissing},
		{name: "basic auth", authz: "Basic dXNlcjpwYXNz", want: auth.ReasonMissing},
		{name: "not a JWT", authz: "Bearer abc", want: auth.ReasonMalformed},
		{name: "JSON serialization", authz: `Bearer {"payload":"e30","signatures":[]}`, want: auth.ReasonMalformed},
		{name: "alg key mismatch", authz: "Bearer " + testissuer.Sign(t, jwa.ES256, mismatched, "k-mismatch", claims(nil)), want: auth.ReasonKeyAlgMismatch},
		{name: "missing kid", authz: "Bearer " + testissuer.Sign(t, jwa.ES256, testissuer.Raw(t, iss.Key), "", claims(nil)), want: auth.ReasonMissingKeyID},
		{name: "wrong key behind a known kid", authz: "Bearer " + testissuer.Sign(t, jwa.ES256, testissuer.NewKey(t, "k1"), "k1", claims(nil)), want: auth.ReasonBadSignature},
		{name: "missing exp", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { delete(c, "exp") })), want: auth.ReasonMissingExpiry},
		{name: "exp 0 is no expiry", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["exp"] = 0 })), want: auth.ReasonMissingExpiry},
		{name: "iat in the future", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["iat"] = time.Now().Add(10 * time.Minute).Unix() })), want: auth.ReasonNotYetValid},
		{name: "empty client_id", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["client_id"] = "" })), want: auth.ReasonMissingClientID},
		{name: "numeric client_id", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["client_id"] = 7 })), want: auth.ReasonMissingClientID},
		{name: "scope array without llm:access", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["scope"] = []string{"llm:access:other"} })), want: auth.ReasonMissingScope},
		{name: "scope substring is not enough", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["scope"] = "xllm:access" })), want: auth.ReasonMissingScope},
		{name: "revoked jti", authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["jti"] = "revoked-1" })), want: auth.ReasonRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), tt.authz, revokedSet{"revoked-1": true})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if id.ClientID != "app-1" {
					t.Fatalf("client id = %q", id.ClientID)
				}
				return
			}
			if got := reasonOf(t, err); got != tt.want {
				t.Fatalf("reason = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestUnknownKidRefreshIsThrottled(t *testing.T) {
	iss := testissuer.New(t)
	v := newVerifier(t, iss, time.Hour)
	if _, err := v.Verify(context.Background(), "Bearer "+iss.Token(t, iss.Key, iss.Claims("app")), nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	before := iss.Fetches()

	// A flood of made-up key ids, some concurrent: at most one forced refresh.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			bogus := testissuer.NewKey(t, fmt.Sprintf("bogus-%d", i))
			_, err := v.Verify(context.Background(), "Bearer "+iss.Token(t, bogus, iss.Claims("app")), nil)
			if err == nil {
				t.Error("token with an unknown kid was accepted")
			}
		})
	}
	wg.Wait()
	if got := iss.Fetches() - before; got > 1 {
		t.Fatalf("a flood of unknown kids fetched the JWKS %d times, want at most 1", got)
	}
}

func TestRotatedKeyIsPickedUp(t *testing.T) {
	iss := testissuer.New(t)
	v := newVerifier(t, iss, time.Hour)
	if _, err := v.Verify(context.Background(), "Bearer "+iss.Token(t, iss.Key, iss.Claims("app")), nil); err != nil {
		t.Fatalf("Verify with the first key: %v", err)
	}
	rotated := iss.Publish(t, testissuer.NewKey(t, "k2"))
	if _, err := v.Verify(context.Background(), "Bearer "+iss.Token(t, rotated, iss.Claims("app")), nil); err != nil {
		t.Fatalf("Verify with the rotated key: %v", err)
	}
}

func TestJWKSUnavailable(t *testing.T) {
	iss := testissuer.New(t)
	v, err := auth.NewVerifier(t.Context(), auth.Config{
		Issuer: iss.Name, Audience: testissuer.Audience, JWKSURL: iss.JWKSURL + ".missing",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), "Bearer "+iss.Token(t, iss.Key, iss.Claims("app")), nil)
	if got := reasonOf(t, err); got != auth.ReasonJWKSUnavailable {
		t.Fatalf("reason = %s, want %s", got, auth.ReasonJWKSUnavailable)
	}
}
