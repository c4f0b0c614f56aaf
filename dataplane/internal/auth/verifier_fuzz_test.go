package auth_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
)

// FuzzVerify feeds arbitrary Authorization headers to a verifier whose issuer has
// minted exactly one identity, app-1. Whatever the input, Verify must not panic, must
// reject with invalid_token and a reason, and may accept only app-1.
func FuzzVerify(f *testing.F) {
	iss := testissuer.New(f)
	v := newVerifier(f, iss, time.Hour)
	valid := iss.Token(f, iss.Key, iss.Claims("app-1"))
	f.Add("Bearer " + valid)
	f.Add("Bearer " + valid[:len(valid)-4] + "AAAA")
	f.Add("Bearer " + testissuer.Unsigned(f, "k1", iss.Claims("app-1")))
	f.Add("Bearer " + testissuer.Sign(f, jwa.HS256, testissuer.PublicKeyPEM(f, iss.Key), "k1", iss.Claims("app-1")))
	f.Add("Bearer " + strings.Replace(valid, ".", "..", 1))
	// RFC 8725's extras: a critical header, no jti, a lifetime over the cap.
	f.Add("Bearer " + iss.TokenWithHeaders(f, iss.Key, map[string]any{"crit": []string{"exp"}}, iss.Claims("app-1")))
	noJTI := iss.Claims("app-1")
	delete(noJTI, "jti")
	f.Add("Bearer " + iss.Token(f, iss.Key, noJTI))
	longLived := iss.Claims("app-1")
	longLived["exp"] = time.Now().Add(48 * time.Hour).Unix()
	f.Add("Bearer " + iss.Token(f, iss.Key, longLived))

	f.Fuzz(func(t *testing.T, authorization string) {
		id, err := v.Verify(t.Context(), authorization, revokedSet{})
		if err == nil {
			if id.ClientID != "app-1" {
				t.Fatalf("accepted an identity nobody issued: %+v", id)
			}
			return
		}
		var e *apierr.Error
		var r *auth.RejectedError
		if !errors.As(err, &e) || e.Code != apierr.InvalidToken || !errors.As(err, &r) || r.Reason == "" {
			t.Fatalf("rejection %v is not invalid_token with a reason", err)
		}
		if len(authorization) >= 16 && strings.Contains(e.Message, authorization) {
			t.Fatal("the client-facing message echoes the header")
		}
	})
}
