package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/app"
	"github.com/portcullis-gw/portcullis/controlplane/devoidc"
)

// TestLoginThroughTheDevOIDCProvider: portcullis login signs the demo admin in
// through the dev OIDC provider (its form filled in by a minimal browser), keeps a
// short-lived token in the config directory (mode 0600), and clients list then
// works with no admin token in the environment or the data directory; logout
// revokes it.
func TestLoginThroughTheDevOIDCProvider(t *testing.T) {
	const password = "pw-for-this-test"
	idp, err := devoidc.Start("127.0.0.1:0", devoidc.DemoPeople(password))
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Stop()
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(idp.ClientSecret()), 0o600); err != nil {
		t.Fatal(err)
	}
	a, _ := controlPlane(t, func(c *app.Config) {
		c.OIDC = app.OIDCConfig{Issuer: idp.Issuer(), ClientID: idp.ClientID(), ClientSecretFile: secret,
			Scopes: "email,groups", RoleClaim: "groups", RoleMap: devoidc.RoleMap, NameClaim: "email"}
	})
	idp.AllowRedirect("http://" + a.Addr() + "/auth/callback")

	configDir := filepath.Join(t.TempDir(), "config")
	emptyData := t.TempDir() // no admin-token here
	env := map[string]string{"PORTCULLIS_CONFIG_DIR": configDir}
	run := func(open func(string) error, args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := Run(context.Background(), append([]string{"--admin-url", "http://" + a.Addr(), "--data-dir", emptyData}, args...),
			IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, OpenURL: open}, func(k string) string { return env[k] })
		return out.String(), errOut.String(), err
	}

	if _, _, err := run(nil, "clients", "list"); err == nil || !strings.Contains(err.Error(), "portcullis login") {
		t.Fatalf("clients list before login: %v, want a pointer at portcullis login", err)
	}
	browser := devoidc.NewBrowser()
	signedIn := make(chan error, 1)
	_, stderr, err := run(func(u string) error {
		_, _, _, err := browser.SignIn(u, "admin@demo.example", password)
		signedIn <- err
		return err
	}, "login", "--timeout", "30s")
	if err != nil || !strings.Contains(stderr, "Signed in to http://"+a.Addr()+" as admin@demo.example") {
		t.Fatalf("login: %v\n%s", err, stderr)
	}
	if err := <-signedIn; err != nil {
		t.Fatalf("the browser's sign-in: %v", err)
	}
	fi, err := os.Stat(filepath.Join(configDir, CredentialsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}
	raw, _ := os.ReadFile(filepath.Join(configDir, CredentialsFile))
	if strings.Contains(stderr, between(string(raw), `"token": "`, `"`)) {
		t.Fatal("login printed the token")
	}
	if out, _, err := run(nil, "clients", "list"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("clients list after login: %v %q", err, out)
	}
	if out, _, err := run(nil, "whoami"); err != nil || !strings.Contains(out, `"credential": "token:tok_`) {
		t.Fatalf("whoami after login: %v %s", err, out)
	}
	if _, _, err := run(nil, "logout"); err != nil {
		t.Fatalf("logout: %v", err)
	}
	var apiErr *APIError
	if _, _, err := run(nil, "clients", "list"); err == nil || errors.As(err, &apiErr) {
		t.Fatalf("clients list after logout: %v, want no token at all", err)
	}
	// A CLI sign-in's link with a forged challenge or port is refused outright.
	for _, q := range []string{"port=80&state=0123456789abcdef&code_challenge=x&code_challenge_method=S256",
		"port=5000&state=short&code_challenge=" + strings.Repeat("a", 43) + "&code_challenge_method=S256",
		"port=5000&state=0123456789abcdef&code_challenge=" + strings.Repeat("a", 43) + "&code_challenge_method=plain"} {
		resp, err := browser.Client.Get("http://" + a.Addr() + "/auth/cli/login?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Fatalf("cli login %s: %d", q, resp.StatusCode)
		}
	}
}
