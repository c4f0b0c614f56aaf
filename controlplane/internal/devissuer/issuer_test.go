package devissuer

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/identity"
)

// knownClients is a fixed client directory.
type knownClients map[string]bool

func (k knownClients) ClientExists(_ context.Context, id string) (bool, error) { return k[id], nil }

// RecordMint records nothing: the change history is the control plane's (tested in
// its app package).
func (k knownClients) RecordMint(context.Context, string, string, time.Time) error { return nil }

var _ ClientDirectory = knownClients(nil)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve starts a real HTTP server with an issuer over dir whose iss is the server's
// own URL; errors render as admin bodies.
func serve(t *testing.T, dir string) (*httptest.Server, *Issuer) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	iss := newIssuer(t, dir, "http://"+srv.Listener.Addr().String())
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		ae := apierr.From(err)
		_ = c.JSON(ae.Status(), ae.Admin())
	}
	iss.Register(e, e.Group("/admin/v1"), knownClients{"moltbot-agent-07": true}, quietLog())
	srv.Config.Handler = e
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, iss
}

func newIssuer(t *testing.T, dir, url string) *Issuer {
	t.Helper()
	iss, err := New(dir, url, quietLog())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return iss
}

func TestMintedTokenVerifiesAgainstServedJWKS(t *testing.T) {
	srv, iss := serve(t, t.TempDir())

	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, srv.URL+DiscoveryPath, &disc)
	if disc.Issuer != srv.URL || disc.JWKSURI != srv.URL+JWKSPath {
		t.Fatalf("discovery = %+v, want issuer %s and jwks_uri %s", disc, srv.URL, srv.URL+JWKSPath)
	}

	set, err := jwk.Fetch(context.Background(), disc.JWKSURI)
	if err != nil {
		t.Fatalf("fetch JWKS: %v", err)
	}
	if set.Len() != 1 {
		t.Fatalf("JWKS has %d keys, want 1", set.Len())
	}
	key, _ := set.Key(0)
	if key.KeyID() != iss.KeyID() {
		t.Fatalf("JWKS kid %q, want %q", key.KeyID(), iss.KeyID())
	}
	raw, _ := json.Marshal(key)
	if bytes.Contains(raw, []byte(`"d"`)) {
		t.Fatalf("JWKS leaks private key material: %s", raw)
	}

	body := `{"client_id":"moltbot-agent-07","ttl_seconds":600,"audience":"aud-x"}`
	resp := post(t, srv.URL+"/admin/v1"+MintPath, body)
	if resp.status != http.StatusOK {
		t.Fatalf("mint status %d: %s", resp.status, resp.body)
	}
	var minted Minted
	if err := json.Unmarshal(resp.body, &minted); err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Parse([]byte(minted.Token), jwt.WithKeySet(set), jwt.WithValidate(true),
		jwt.WithIssuer(srv.URL), jwt.WithAudience("aud-x"), jwt.WithAcceptableSkew(identity.MaxClockSkewSeconds*time.Second))
	if err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if tok.Subject() != "moltbot-agent-07" || tok.JwtID() != minted.JTI || tok.JwtID() == "" {
		t.Fatalf("claims sub=%q jti=%q, want sub moltbot-agent-07 and jti %q", tok.Subject(), tok.JwtID(), minted.JTI)
	}
	for claim, want := range map[string]string{identity.ClaimClientID: "moltbot-agent-07", identity.ClaimScope: identity.ScopeLLMAccess} {
		got, _ := tok.Get(claim)
		if got != want {
			t.Errorf("claim %s = %v, want %q", claim, got, want)
		}
	}
	if d := tok.Expiration().Sub(tok.IssuedAt()); d != 10*time.Minute {
		t.Errorf("exp - iat = %v, want 10m", d)
	}
	if !tok.Expiration().Equal(minted.ExpiresAt) {
		t.Errorf("exp %v, response expires_at %v", tok.Expiration(), minted.ExpiresAt)
	}
}

func TestMintRejectsBadInput(t *testing.T) {
	srv, _ := serve(t, t.TempDir())
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   apierr.Code
		wantField  string
	}{
		{"missing client", `{}`, 422, apierr.ValidationFailed, "client_id"},
		{"unknown client", `{"client_id":"ghost"}`, 422, apierr.ValidationFailed, "client_id"},
		{"client with space", `{"client_id":"a b"}`, 422, apierr.ValidationFailed, "client_id"},
		{"ttl too long", `{"client_id":"moltbot-agent-07","ttl_seconds":86401}`, 422, apierr.ValidationFailed, "ttl_seconds"},
		{"negative ttl", `{"client_id":"moltbot-agent-07","ttl_seconds":-5}`, 422, apierr.ValidationFailed, "ttl_seconds"},
		{"bad scope", `{"client_id":"moltbot-agent-07","scope":"llm:access \"x"}`, 422, apierr.ValidationFailed, "scope"},
		{"ttl wrong type", `{"client_id":"moltbot-agent-07","ttl_seconds":"1h"}`, 422, apierr.ValidationFailed, "ttl_seconds"},
		{"malformed", `{"client_id":`, 400, apierr.InvalidJSON, ""},
		{"unknown field", `{"client_id":"moltbot-agent-07","admin":true}`, 400, apierr.InvalidJSON, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, srv.URL+"/admin/v1"+MintPath, tt.body)
			if resp.status != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.status, tt.wantStatus, resp.body)
			}
			var body apierr.AdminBody
			if err := json.Unmarshal(resp.body, &body); err != nil {
				t.Fatalf("body %s: %v", resp.body, err)
			}
			if body.Error.Code != tt.wantCode {
				t.Fatalf("code %q, want %q", body.Error.Code, tt.wantCode)
			}
			if tt.wantField != "" && (len(body.Error.Fields) == 0 || body.Error.Fields[0].Field != tt.wantField) {
				t.Fatalf("fields %+v, want %q first", body.Error.Fields, tt.wantField)
			}
			if strings.Contains(string(resp.body), "eyJ") {
				t.Fatalf("error body carries a token: %s", resp.body)
			}
		})
	}
}

func TestKeyPersistsAcrossRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	first := newIssuer(t, dir, "http://127.0.0.1:1")
	path := filepath.Join(dir, KeyFileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("key file: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Fatalf("key file mode %v, want 0600", mode)
	}
	second := newIssuer(t, dir, "http://127.0.0.1:1")
	if first.KeyID() == "" || first.KeyID() != second.KeyID() {
		t.Fatalf("kid changed across restart: %q then %q", first.KeyID(), second.KeyID())
	}
	// A token from the first instance verifies with the second's public keys.
	m, err := first.Mint("c1", nil, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse([]byte(m.Token), jwt.WithKeySet(second.PublicKeys()), jwt.WithAudience(identity.DefaultAudience)); err != nil {
		t.Fatalf("token from first start does not verify after restart: %v", err)
	}
	if got := time.Until(m.ExpiresAt); got <= DefaultTTL-time.Minute || got > DefaultTTL {
		t.Fatalf("default TTL gives expiry in %v, want about %v", got, DefaultTTL)
	}

	other := newIssuer(t, t.TempDir(), "http://127.0.0.1:1")
	if other.KeyID() == first.KeyID() {
		t.Fatal("two data dirs share a kid")
	}
}

func TestCorruptKeyFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, KeyFileName), []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(dir, "http://127.0.0.1:1", quietLog()); err == nil {
		t.Fatal("New accepted a corrupt key file")
	}
}

func TestKeyFileOthersCanReadIsRefused(t *testing.T) {
	dir := t.TempDir()
	newIssuer(t, dir, "http://127.0.0.1:1") // writes the key, 0600
	path := filepath.Join(dir, KeyFileName)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(dir, "http://127.0.0.1:1", quietLog())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "0644") {
		t.Fatalf("New with a key file of mode 0644: %v", err)
	}
}

type response struct {
	status int
	body   []byte
}

func post(t *testing.T, url, body string) response {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, b}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
