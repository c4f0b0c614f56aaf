package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CredentialsFile is the file, in the user's configuration directory, where
// `portcullis login` keeps its API token per control plane (mode 0600).
const CredentialsFile = "credentials.json"

// credential is one control plane's token from `portcullis login`.
type credential struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Principal string    `json:"principal"`
	ExpiresAt time.Time `json:"expires_at"`
}

// configDir is where the CLI keeps its credentials: PORTCULLIS_CONFIG_DIR, else
// $XDG_CONFIG_HOME/portcullis, else $HOME/.config/portcullis.
func configDir(getenv func(string) string) string {
	if d := getenv("PORTCULLIS_CONFIG_DIR"); d != "" {
		return d
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "portcullis")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "portcullis")
	}
	return ""
}

func readCredentials(dir string) (map[string]credential, error) {
	out := map[string]credential{}
	if dir == "" {
		return out, nil
	}
	path := filepath.Join(dir, CredentialsFile)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v); chmod 600 it, or portcullis logout and login again", path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

func writeCredentials(dir string, creds map[string]credential) error {
	if dir == "" {
		return errors.New("no configuration directory: set PORTCULLIS_CONFIG_DIR or HOME")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(creds, "", "  ") // strings and times always marshal
	f, err := os.CreateTemp(dir, "."+CredentialsFile+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, a no-op
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(raw); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, CredentialsFile))
}

// loginToken is the token `portcullis login` stored for the admin URL, "" when
// there is none or it has expired.
func (cmd *command) loginToken() (string, error) {
	creds, err := readCredentials(cmd.cfg.ConfigDir)
	if err != nil {
		return "", err
	}
	c, ok := creds[normalizeURL(cmd.cfg.AdminURL)]
	if !ok || !time.Now().Before(c.ExpiresAt) {
		return "", nil
	}
	return c.Token, nil
}

func normalizeURL(u string) string { return strings.TrimRight(u, "/") }

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// login runs "portcullis login": the person signs in with the control plane's
// identity provider in a browser, and the CLI gets a short-lived API token back on
// a loopback redirect, bound by its own PKCE verifier, and keeps it in
// <config dir>/credentials.json (mode 0600).
func (cmd *command) login(ctx context.Context, args []string) error {
	fs := cmd.newFlags("login", "login [--no-browser] [--timeout 5m]")
	noBrowser := fs.Bool("no-browser", false, "only print the sign-in URL")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the sign-in")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	base, err := url.Parse(normalizeURL(cmd.cfg.AdminURL))
	if err != nil || base.Host == "" || (base.Scheme != "http" && base.Scheme != "https") {
		return fmt.Errorf("admin URL %q: must be an http(s) URL such as http://127.0.0.1:8080", cmd.cfg.AdminURL)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the sign-in's redirect: %w", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	state, verifier := randomString(24), randomString(32)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"port": {strconv.Itoa(port)}, "state": {state},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	signInURL := base.String() + "/auth/cli/login?" + q.Encode()

	codes := make(chan string, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" || subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("state")), []byte(state)) != 1 ||
			r.URL.Query().Get("code") == "" {
			http.Error(w, "not this sign-in", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>Portcullis</title><p>Signed in. You can close this tab and go back to the terminal.</p>")
		select {
		case codes <- r.URL.Query().Get("code"):
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	fmt.Fprintf(cmd.io.Stderr, "Sign in at:\n\n  %s\n\n", signInURL)
	if !*noBrowser {
		cmd.openBrowser(signInURL)
	}
	wait, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var code string
	select {
	case code = <-codes:
	case <-wait.Done():
		return fmt.Errorf("no sign-in within %s", *timeout)
	}

	body, _ := json.Marshal(map[string]string{"code": code, "code_verifier": verifier})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.String()+"/auth/cli/token", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: requestTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}).Do(req)
	if err != nil {
		return fmt.Errorf("POST /auth/cli/token: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var c credential
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &c) != nil || c.Token == "" {
		return fmt.Errorf("the control plane refused the sign-in's code (status %d)", resp.StatusCode)
	}
	creds, err := readCredentials(cmd.cfg.ConfigDir)
	if err != nil {
		return err
	}
	creds[base.String()] = c
	if err := writeCredentials(cmd.cfg.ConfigDir, creds); err != nil {
		return fmt.Errorf("keep the token: %w", err)
	}
	fmt.Fprintf(cmd.io.Stderr, "Signed in to %s as %s until %s (token in %s)\n", base, c.Principal,
		c.ExpiresAt.Local().Format(time.RFC3339), filepath.Join(cmd.cfg.ConfigDir, CredentialsFile))
	return nil
}

// openBrowser opens u with IO.OpenURL, or xdg-open / open where a desktop seems to
// be; failing that, the printed URL is the way.
func (cmd *command) openBrowser(u string) {
	if cmd.io.OpenURL != nil {
		go func() {
			if err := cmd.io.OpenURL(u); err != nil {
				fmt.Fprintf(cmd.io.Stderr, "could not open a browser (%v); open the URL above\n", err)
			}
		}()
		return
	}
	for _, opener := range []string{"xdg-open", "open"} {
		if path, err := exec.LookPath(opener); err == nil {
			_ = exec.Command(path, u).Start()
			return
		}
	}
}

// logout runs "portcullis logout": the stored token of the admin URL is revoked
// and forgotten.
func (cmd *command) logout(ctx context.Context, args []string) error {
	fs := cmd.newFlags("logout", "logout")
	if _, err := cmd.parse(fs, args, 0); err != nil {
		return err
	}
	creds, err := readCredentials(cmd.cfg.ConfigDir)
	if err != nil {
		return err
	}
	key := normalizeURL(cmd.cfg.AdminURL)
	c, ok := creds[key]
	if !ok {
		fmt.Fprintf(cmd.io.Stderr, "not signed in to %s\n", key)
		return nil
	}
	if time.Now().Before(c.ExpiresAt) {
		cl, err := newClient(key, c.Token)
		if err != nil {
			return err
		}
		var apiErr *APIError
		if _, err := cl.call(ctx, http.MethodDelete, "/me/tokens/"+url.PathEscape(c.ID), nil, nil); err != nil &&
			!(errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized) {
			return fmt.Errorf("revoke the token: %w", err)
		}
	}
	delete(creds, key)
	if err := writeCredentials(cmd.cfg.ConfigDir, creds); err != nil {
		return err
	}
	fmt.Fprintf(cmd.io.Stderr, "signed out of %s\n", key)
	return nil
}
