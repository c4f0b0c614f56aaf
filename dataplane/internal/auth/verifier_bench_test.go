package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
)

// BenchmarkVerify measures verifying one valid token, the check every request pays.
// The same token is presented every time, as a client reusing its token does, so
// after the first call it is answered from the token cache.
func BenchmarkVerify(b *testing.B) { benchmarkVerify(b, 0) }

// BenchmarkVerifyUncached is BenchmarkVerify with the token cache off: the full
// signature check and claim parsing on every call, what a token's first use costs.
func BenchmarkVerifyUncached(b *testing.B) { benchmarkVerify(b, -1) }

func benchmarkVerify(b *testing.B, cacheSize int) {
	iss := testissuer.New(b)
	v, err := auth.NewVerifier(b.Context(), auth.Config{
		Issuer: iss.Name, Audience: testissuer.Audience, JWKSURL: iss.JWKSURL,
		ForcedRefreshGap: time.Hour, TokenCacheSize: cacheSize,
	})
	if err != nil {
		b.Fatal(err)
	}
	authz := "Bearer " + iss.Token(b, iss.Key, iss.Claims("app-1"))
	revoked := revokedSet{"revoked-1": true}
	ctx := context.Background()
	if _, err := v.Verify(ctx, authz, revoked); err != nil { // fetches the JWKS
		b.Fatalf("Verify: %v", err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, authz, revoked); err != nil {
			b.Fatalf("Verify: %v", err)
		}
	}
}
