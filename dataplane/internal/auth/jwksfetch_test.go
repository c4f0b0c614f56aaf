package auth_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
)

func TestCheckJWKSURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://issuer.example.com/.well-known/jwks.json": true,
		"http://127.0.0.1:8080/.well-known/jwks.json":      true,
		"http://[::1]:8080/jwks":                           true,
		"http://localhost:8080/jwks":                       true,
		"http://issuer.example.com/.well-known/jwks.json":  false,
		"http://10.0.0.5/jwks":                             false,
		"ftp://issuer.example.com/jwks":                    false,
		"issuer.example.com/jwks":                          false,
		"":                                                 false,
	} {
		if err := auth.CheckJWKSURL(raw); (err == nil) != ok {
			t.Errorf("CheckJWKSURL(%q) = %v, want allowed %v", raw, err, ok)
		}
	}
	if _, err := auth.NewVerifier(t.Context(), auth.Config{Issuer: "i", Audience: "a", JWKSURL: "http://issuer.example.com/jwks"}); err == nil ||
		!strings.Contains(err.Error(), "loopback") {
		t.Fatalf("NewVerifier with a plain-http remote JWKS: %v, want refused", err)
	}
}

// TestJWKSRedirectAndSizeAreRefused: a JWKS endpoint that redirects (even to the
// real key set) or that answers more than MaxJWKSBytes yields no keys; the same key
// set served directly is accepted.
func TestJWKSRedirectAndSizeAreRefused(t *testing.T) {
	iss := testissuer.New(t)
	resp, err := http.Get(iss.JWKSURL)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	token := "Bearer " + iss.Token(t, iss.Key, iss.Claims("app"))
	huge := strings.Repeat(" ", 10<<20) // 10 MiB of JSON whitespace, then the key set
	for _, tc := range []struct {
		name   string
		handle http.HandlerFunc
		want   auth.Reason // "" for accepted
	}{
		{"direct", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }, ""},
		{"redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, iss.JWKSURL, http.StatusFound) }, auth.ReasonJWKSUnavailable},
		{"10 MiB, declared", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(huge)+len(jwks)))
			_, _ = io.WriteString(w, huge+string(jwks))
		}, auth.ReasonJWKSUnavailable},
		{"10 MiB, chunked", func(w http.ResponseWriter, _ *http.Request) {
			w.(http.Flusher).Flush() // no Content-Length: the bound is met while reading
			_, _ = io.WriteString(w, huge+string(jwks))
		}, auth.ReasonJWKSUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handle)
			t.Cleanup(srv.Close)
			v, err := auth.NewVerifier(t.Context(), auth.Config{Issuer: iss.Name, Audience: testissuer.Audience, JWKSURL: srv.URL + "/jwks"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = v.Verify(context.Background(), token, nil)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Verify: %v, want the token accepted", err)
			case tc.want != "":
				if got := reasonOf(t, err); got != tc.want {
					t.Fatalf("reason %s, want %s", got, tc.want)
				}
			}
		})
	}
}
