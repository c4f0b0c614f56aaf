package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/testissuer"
)

// These tests are inside the package to set the Verifier's clock and look at its
// token cache; everything else about them is real: keys generated now, a JWKS served
// over HTTP, tokens signed with ES256.

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }

func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time  { return time.Unix(0, c.ns.Load()) }

type revokedJTIs map[string]bool

func (r revokedJTIs) Revoked(jti string) bool { return r[jti] }

func newCachingVerifier(t *testing.T, iss *testissuer.Issuer, clk *clock, cacheSize int) *Verifier {
	t.Helper()
	v, err := NewVerifier(t.Context(), Config{
		Issuer: iss.Name, Audience: testissuer.Audience, JWKSURL: iss.JWKSURL,
		ForcedRefreshGap: time.Nanosecond, TokenCacheSize: cacheSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	if clk != nil {
		v.now = clk.now
	}
	return v
}

// rejection returns the reason err carries, or "" for nil.
func rejection(t *testing.T, err error) Reason {
	t.Helper()
	if err == nil {
		return ""
	}
	var r *RejectedError
	if !errors.As(err, &r) {
		t.Fatalf("error %v has no RejectedError cause", err)
	}
	return r.Reason
}

func TestCachedTokenIsRefusedFromItsExpiry(t *testing.T) {
	iss := testissuer.New(t)
	start := time.Now().Truncate(time.Second)
	exp := start.Add(5 * time.Minute)
	claims := iss.Claims("app-1")
	claims["iat"], claims["exp"] = start.Unix(), exp.Unix()
	authz := "Bearer " + iss.Token(t, iss.Key, claims)

	tests := []struct {
		name string
		at   time.Time
		want Reason
	}{
		{name: "long before exp", at: start.Add(time.Minute)},
		{name: "last second within skew", at: exp.Add(Skew - time.Second)},
		{name: "exp plus skew", at: exp.Add(Skew), want: ReasonExpired},
		{name: "a day later", at: exp.Add(24 * time.Hour), want: ReasonExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock(start)
			v := newCachingVerifier(t, iss, clk, 0)
			if _, err := v.Verify(context.Background(), authz, nil); err != nil {
				t.Fatalf("first Verify: %v", err)
			}
			if n := v.tokens.count(); n != 1 {
				t.Fatalf("cache holds %d tokens after a valid one, want 1", n)
			}
			clk.set(tt.at)
			_, err := v.Verify(context.Background(), authz, nil)
			if got := rejection(t, err); got != tt.want {
				t.Fatalf("reason = %q, want %q", got, tt.want)
			}
			if wantCount := map[bool]int{true: 1, false: 0}[tt.want == ""]; v.tokens.count() != wantCount {
				t.Fatalf("cache holds %d tokens, want %d", v.tokens.count(), wantCount)
			}
		})
	}
}

func TestCachedTokenHonoursRevocationOnEveryUse(t *testing.T) {
	iss := testissuer.New(t)
	v := newCachingVerifier(t, iss, nil, 0)
	claims := iss.Claims("app-1")
	claims["jti"] = "jti-1"
	authz := "Bearer " + iss.Token(t, iss.Key, claims)

	steps := []struct {
		name    string
		revoked Revocations
		want    Reason
	}{
		{name: "valid, now cached", revoked: revokedJTIs{"other": true}},
		{name: "revoked by a newer policy", revoked: revokedJTIs{"jti-1": true}, want: ReasonRevoked},
		{name: "still revoked", revoked: revokedJTIs{"jti-1": true, "other": true}, want: ReasonRevoked},
		{name: "revocation lifted", revoked: revokedJTIs{}},
		{name: "no revocation list", revoked: nil},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), authz, st.revoked)
			if got := rejection(t, err); got != st.want {
				t.Fatalf("reason = %q, want %q", got, st.want)
			}
			if st.want == "" && (id.ClientID != "app-1" || id.TokenID != "jti-1") {
				t.Fatalf("identity = %+v", id)
			}
			if v.tokens.count() != 1 {
				t.Fatalf("cache holds %d tokens, want 1", v.tokens.count())
			}
		})
	}
}

func TestCachedTokenIsReverifiedAfterAJWKSRefresh(t *testing.T) {
	iss := testissuer.New(t)
	v := newCachingVerifier(t, iss, nil, 0)
	authz := "Bearer " + iss.Token(t, iss.Key, iss.Claims("app-1"))
	if _, err := v.Verify(context.Background(), authz, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	// The issuer withdraws k1; a token with an unknown kid forces the refresh that
	// brings the news.
	iss.Unpublish("k1")
	unknown := "Bearer " + iss.Token(t, testissuer.NewKey(t, "k-unknown"), iss.Claims("app-1"))
	if got := rejection(t, func() error { _, err := v.Verify(context.Background(), unknown, nil); return err }()); got != ReasonUnknownKeyID {
		t.Fatalf("unknown kid: reason = %q", got)
	}
	_, err := v.Verify(context.Background(), authz, nil)
	if got := rejection(t, err); got != ReasonUnknownKeyID {
		t.Fatalf("cached token signed by a withdrawn key: reason = %q, want %q", got, ReasonUnknownKeyID)
	}
	if n := v.tokens.count(); n != 0 {
		t.Fatalf("cache holds %d tokens, want 0", n)
	}
}

func TestTokenCacheOff(t *testing.T) {
	iss := testissuer.New(t)
	v := newCachingVerifier(t, iss, nil, -1)
	authz := "Bearer " + iss.Token(t, iss.Key, iss.Claims("app-1"))
	for range 2 {
		if _, err := v.Verify(context.Background(), authz, nil); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	}
	if v.tokens != nil || v.tokens.count() != 0 {
		t.Fatal("a verifier with TokenCacheSize -1 caches tokens")
	}
}

func TestTokenCacheStaysBounded(t *testing.T) {
	c := newTokenCache(8)
	digest := func(i int) tokenDigest { return tokenDigest{byte(i), byte(i >> 8)} }
	hot := digest(0)
	c.put(hot, &verifiedToken{})
	for i := 1; i <= 1000; i++ {
		c.put(digest(i), &verifiedToken{})
		if _, ok := c.get(hot); !ok {
			t.Fatalf("the token in constant use was evicted after %d others", i)
		}
		if n := c.count(); n > 8 {
			t.Fatalf("cache of size 8 holds %d entries", n)
		}
	}
	if _, ok := c.get(digest(1)); ok {
		t.Fatal("a token not presented for 999 insertions is still cached")
	}
}

func TestCachedVerifyIsSafeForConcurrentUse(t *testing.T) {
	iss := testissuer.New(t)
	v := newCachingVerifier(t, iss, nil, 4)
	tokens := make([]string, 6) // more than the cache holds, so it churns
	for i := range tokens {
		claims := iss.Claims(fmt.Sprintf("app-%d", i))
		tokens[i] = "Bearer " + iss.Token(t, iss.Key, claims)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				k := (g + i) % len(tokens)
				id, err := v.Verify(context.Background(), tokens[k], revokedJTIs{})
				if err != nil || id.ClientID != fmt.Sprintf("app-%d", k) {
					t.Errorf("Verify token %d: %+v, %v", k, id, err)
					return
				}
				id.Scopes[0] = "mutated" // the caller owns what it is given
			}
		})
	}
	wg.Wait()
}

// TestExpectationsChange: new expectations from the policy apply to the next
// request, a remembered token included: another audience refuses it, a required
// claim it lacks refuses it, and the data plane's own audience again accepts it.
func TestExpectationsChange(t *testing.T) {
	iss := testissuer.New(t)
	v := newCachingVerifier(t, iss, nil, 0)
	authz := "Bearer " + iss.Token(t, iss.Key, iss.Claims("app-1"))
	if _, err := v.Verify(t.Context(), authz, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	v.Expect(Expectations{Audience: "moltbot-gateway"})
	if _, err := v.Verify(t.Context(), authz, nil); rejection(t, err) != ReasonWrongAudience {
		t.Fatalf("a remembered token under another audience: %v", err)
	}
	v.Expect(Expectations{RequireClaims: []string{"tenant"}})
	if _, err := v.Verify(t.Context(), authz, nil); rejection(t, err) != ReasonMissingClaim {
		t.Fatalf("a token without a required claim: %v", err)
	}
	v.Expect(Expectations{RequireClaims: []string{"sub"}})
	if _, err := v.Verify(t.Context(), authz, nil); err != nil {
		t.Fatalf("under the configured audience, with sub required: %v", err)
	}
	if v.tokens.count() != 1 {
		t.Fatalf("%d tokens remembered", v.tokens.count())
	}
}
