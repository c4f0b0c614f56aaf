package auth_test

import (
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
)

// TestBestPracticeExtras: RFC 8725's extras, with their safe defaults and their
// settings: a jti is required, the lifetime is capped, a crit header is refused,
// and a required typ is enforced.
func TestBestPracticeExtras(t *testing.T) {
	iss := testissuer.New(t)
	now := time.Now()
	claims := func(edit func(map[string]any)) map[string]any {
		c := iss.Claims("app")
		edit(c)
		return c
	}
	tests := []struct {
		name    string
		cfg     func(*auth.Config)
		headers map[string]any
		claims  map[string]any
		want    auth.Reason // "" for accepted
	}{
		{name: "valid", claims: iss.Claims("app")},
		{name: "no jti", claims: claims(func(c map[string]any) { delete(c, "jti") }), want: auth.ReasonMissingJTI},
		{name: "no jti, allowed", cfg: func(c *auth.Config) { c.AllowMissingJTI = true },
			claims: claims(func(c map[string]any) { delete(c, "jti") })},
		{name: "24 h lifetime", claims: claims(func(c map[string]any) { c["exp"] = now.Add(24 * time.Hour).Unix() })},
		{name: "25 h lifetime", claims: claims(func(c map[string]any) { c["exp"] = now.Add(25 * time.Hour).Unix() }), want: auth.ReasonLifetime},
		{name: "25 h left, no iat", claims: claims(func(c map[string]any) {
			delete(c, "iat")
			c["exp"] = now.Add(25 * time.Hour).Unix()
		}), want: auth.ReasonLifetime},
		{name: "2 h lifetime under a 1 h cap", cfg: func(c *auth.Config) { c.MaxLifetime = time.Hour },
			claims: claims(func(c map[string]any) { c["exp"] = now.Add(2 * time.Hour).Unix() }), want: auth.ReasonLifetime},
		{name: "cap off", cfg: func(c *auth.Config) { c.MaxLifetime = -1 },
			claims: claims(func(c map[string]any) { c["exp"] = now.Add(30 * 24 * time.Hour).Unix() })},
		{name: "crit", headers: map[string]any{"crit": []string{"exp"}}, claims: iss.Claims("app"), want: auth.ReasonCritical},
		{name: "typ JWT where at+jwt is required", cfg: func(c *auth.Config) { c.RequiredType = "at+jwt" },
			claims: iss.Claims("app"), want: auth.ReasonWrongType},
		{name: "typ application/at+jwt", cfg: func(c *auth.Config) { c.RequiredType = "at+jwt" },
			headers: map[string]any{"typ": "application/AT+JWT"}, claims: iss.Claims("app")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := auth.Config{Issuer: iss.Name, Audience: testissuer.Audience, JWKSURL: iss.JWKSURL}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			v, err := auth.NewVerifier(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(t.Context(), "Bearer "+iss.TokenWithHeaders(t, iss.Key, tt.headers, tt.claims), nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Verify: %v, want the token accepted", err)
			case tt.want != "":
				if got := reasonOf(t, err); got != tt.want {
					t.Fatalf("reason %s, want %s", got, tt.want)
				}
			}
		})
	}
}
