package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
)

func TestRejectedTokensGet401(t *testing.T) {
	e := newEnv(t, envOptions{})
	iss := e.iss
	claims := func(edit func(map[string]any)) map[string]any {
		c := iss.Claims("premium-app")
		edit(c)
		return c
	}
	now := time.Now()
	padded := claims(func(c map[string]any) { c["padding"] = strings.Repeat("p", 8<<10) })

	tests := []struct {
		name   string
		authz  string
		reason string
	}{
		{name: "alg none", reason: "alg_not_allowed",
			authz: "Bearer " + testissuer.Unsigned(t, "k1", iss.Claims("premium-app"))},
		{name: "HS256 signed with the public key's bytes", reason: "alg_not_allowed",
			authz: "Bearer " + testissuer.Sign(t, jwa.HS256, testissuer.PublicKeyPEM(t, iss.Key), "k1", iss.Claims("premium-app"))},
		{name: "key not in the JWKS", reason: "unknown_kid",
			authz: "Bearer " + iss.Token(t, testissuer.NewKey(t, "k-stranger"), iss.Claims("premium-app"))},
		{name: "foreign key reusing a JWKS kid", reason: "bad_signature",
			authz: "Bearer " + iss.Token(t, testissuer.NewKey(t, "k1"), iss.Claims("premium-app"))},
		{name: "expired", reason: "expired",
			authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) {
				c["iat"], c["exp"] = now.Add(-10*time.Minute).Unix(), now.Add(-2*time.Minute).Unix()
			}))},
		{name: "nbf in the future beyond skew", reason: "not_yet_valid",
			authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["nbf"] = now.Add(2 * time.Minute).Unix() }))},
		{name: "wrong iss", reason: "wrong_issuer",
			authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["iss"] = "https://evil.example" }))},
		{name: "wrong aud", reason: "wrong_audience",
			authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["aud"] = "some-other-api" }))},
		{name: "missing client_id", reason: "missing_client_id",
			authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { delete(c, "client_id") }))},
		{name: "missing llm:access scope", reason: "missing_scope",
			authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["scope"] = "openid profile" }))},
		{name: "revoked jti", reason: "revoked",
			authz: "Bearer " + iss.Token(t, iss.Key, claims(func(c map[string]any) { c["jti"] = "revoked-jti" }))},
		{name: "8 KB+ Authorization header", reason: "header_too_large",
			authz: "Bearer " + iss.Token(t, iss.Key, padded)},
		{name: "no Authorization header", reason: "missing_bearer", authz: ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("auth-case-%d", i)
			headers := map[string]string{"X-Request-Id": id}
			if tt.authz != "" {
				headers["Authorization"] = tt.authz
			}
			resp := e.do(t, http.MethodPost, "/v1/chat/completions", "",
				`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, headers)
			openAIError(t, resp, http.StatusUnauthorized, apierr.InvalidToken)
			if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
				t.Fatalf("WWW-Authenticate = %q", got)
			}
			line := accessLine(t, e.logs, id)
			if line["reason"] != tt.reason || line["status"] != float64(401) {
				t.Fatalf("log line reason=%v status=%v, want %s 401", line["reason"], line["status"], tt.reason)
			}
			if tt.authz != "" {
				token := strings.TrimPrefix(tt.authz, "Bearer ")
				if strings.Contains(e.logs.String(), token) || strings.Contains(e.logs.String(), token[:40]) {
					t.Fatal("the token appears in the log")
				}
			}
		})
	}

	t.Run("a valid token passes", func(t *testing.T) {
		if resp := e.chat(t, e.token(t, "premium-app"), "gpt-4o"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d", resp.StatusCode)
		}
	})
	t.Run("GET /v1/models also requires a token", func(t *testing.T) {
		resp := e.do(t, http.MethodGet, "/v1/models", "", "", nil)
		openAIError(t, resp, http.StatusUnauthorized, apierr.InvalidToken)
	})
}

func TestJWKSRotationIsPickedUpWithoutRestart(t *testing.T) {
	e := newEnv(t, envOptions{})
	if resp := e.chat(t, e.token(t, "premium-app"), "gpt-4o"); resp.StatusCode != http.StatusOK {
		t.Fatalf("first key: status %d", resp.StatusCode)
	}
	fetches := e.iss.Fetches()

	rotated := e.iss.Publish(t, testissuer.NewKey(t, "k2"))
	token := e.iss.Token(t, rotated, e.iss.Claims("premium-app"))
	if resp := e.chat(t, token, "gpt-4o"); resp.StatusCode != http.StatusOK {
		t.Fatalf("rotated key: status %d", resp.StatusCode)
	}
	if got := e.iss.Fetches() - fetches; got != 1 {
		t.Fatalf("the unknown kid caused %d JWKS fetches, want 1", got)
	}
	// The old key keeps working while the issuer still publishes it.
	if resp := e.chat(t, e.token(t, "premium-app"), "gpt-4o"); resp.StatusCode != http.StatusOK {
		t.Fatalf("first key after rotation: status %d", resp.StatusCode)
	}
}

// TestCachedTokensFollowPolicySwaps presents the same two tokens before and after
// policy swaps. After its first use a token is answered from the verifier's cache,
// which must not delay a revocation or a disabled client by even one request.
func TestCachedTokensFollowPolicySwaps(t *testing.T) {
	e := newEnv(t, envOptions{})
	claims := e.iss.Claims("premium-app")
	claims["jti"] = "swap-jti"
	revocable := e.iss.Token(t, e.iss.Key, claims)
	other := e.token(t, "premium-app")

	revoke := e.snapshot()
	revoke.RevokedTokens = append(revoke.RevokedTokens, policy.RevokedToken{JTI: "swap-jti", ExpiresAt: time.Now().Add(time.Hour)})
	disable := e.snapshot()
	disable.RevokedTokens = revoke.RevokedTokens
	for i := range disable.Clients {
		if disable.Clients[i].ClientID == "premium-app" {
			disable.Clients[i].Enabled = false
		}
	}

	steps := []struct {
		name     string
		publish  *policy.Snapshot // applied before the step; nil keeps the policy
		token    string
		status   int
		code     apierr.Code
		reason   string
		attempts int
	}{
		{name: "first use verifies and caches", token: revocable, status: http.StatusOK, attempts: 2},
		{name: "other token cached too", token: other, status: http.StatusOK, attempts: 2},
		{name: "jti revoked by the next snapshot", publish: revoke, token: revocable,
			status: http.StatusUnauthorized, code: apierr.InvalidToken, reason: "revoked", attempts: 2},
		{name: "unrevoked token unaffected", token: other, status: http.StatusOK, attempts: 1},
		{name: "client disabled by the next snapshot", publish: disable, token: other,
			status: http.StatusForbidden, code: apierr.ClientDisabled, attempts: 2},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.publish != nil {
				e.publish(t, st.publish)
			}
			for n := range st.attempts {
				id := fmt.Sprintf("swap-%d-%d", i, n)
				resp := e.do(t, http.MethodPost, "/v1/chat/completions", st.token,
					`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": id})
				if st.status == http.StatusOK {
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("attempt %d: status %d, want 200", n, resp.StatusCode)
					}
					continue
				}
				openAIError(t, resp, st.status, st.code)
				if st.reason != "" {
					if line := accessLine(t, e.logs, id); line["reason"] != st.reason {
						t.Fatalf("attempt %d: log reason %v, want %s", n, line["reason"], st.reason)
					}
				}
			}
		})
	}
}
