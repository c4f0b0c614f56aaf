package devoidc

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Browser is the least of a browser, for tests and scripts that sign in through the
// provider's form: a cookie jar, redirects followed. It is not safe for concurrent
// use.
type Browser struct {
	Client *http.Client
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser() *Browser {
	jar, _ := cookiejar.New(nil) // nil options never fail
	return &Browser{Client: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

var (
	hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	formAction  = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
)

// SignIn opens start (the control plane's /auth/login, or a CLI's sign-in URL),
// fills the provider's form with email and password, and follows the redirects to
// the end. It returns the last response's URL, status and body.
func (b *Browser) SignIn(start, email, password string) (string, int, string, error) {
	resp, err := b.Client.Get(start)
	if err != nil {
		return "", 0, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return "", 0, "", err
	}
	action := formAction.FindStringSubmatch(string(body))
	if resp.StatusCode != http.StatusOK || action == nil {
		return resp.Request.URL.String(), resp.StatusCode, string(body), fmt.Errorf("no sign-in form at %s (status %d)", resp.Request.URL, resp.StatusCode)
	}
	form := url.Values{"username": {email}, "password": {password}}
	for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
		form.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	target, err := resp.Request.URL.Parse(html.UnescapeString(action[1]))
	if err != nil {
		return "", 0, "", err
	}
	resp, err = b.Client.PostForm(target.String(), form)
	if err != nil {
		return "", 0, "", err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.Request.URL.String(), resp.StatusCode, strings.TrimSpace(string(body)), err
}
