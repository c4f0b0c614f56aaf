package adminapi

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// rule is what a name or key must look like.
type rule struct {
	re      *regexp.Regexp
	message string
}

func (r rule) valid(s string) bool { return r.re.MatchString(s) }

var (
	// slug names tenants, tiers, providers, deployments, regions and residencies.
	slug = rule{regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`),
		"must be 1 to 63 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit"}
	// clientID is the client_id claim of a JWT, which other systems often mint in mixed case.
	clientID = rule{regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$`),
		"must be 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"}
	// id keys models and fallback maps; generated ids are lowercase UUIDs.
	id = rule{regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`),
		"must be 1 to 64 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit"}
	// modelName is a public model name as apps send it, e.g. "gpt-4o" or "llama3:8b".
	modelName = rule{regexp.MustCompile(`^[a-z0-9][a-z0-9_.:/-]{0,127}$`),
		"must be 1 to 128 lowercase letters, digits, '_', '.', ':', '/' or '-', starting with a letter or digit"}
	// upstreamModel is the provider's own model name, e.g. "meta-llama/Llama-3-70B".
	upstreamModel = rule{regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,255}$`),
		"must be 1 to 256 letters, digits, '_', '.', ':', '/', '@', '+' or '-', starting with a letter or digit"}
	// jti is a JWT id: any URL-safe token.
	jti = rule{regexp.MustCompile(`^[A-Za-z0-9_.:~-]{1,255}$`),
		"must be 1 to 255 letters, digits, '_', '.', ':', '~' or '-'"}
)

// text reports whether s is printable text of at most max characters.
func text(s string, max int) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// oneOf reports whether v is in allowed, with the message saying what is.
func oneOf(v string, allowed []string) (bool, string) {
	return slices.Contains(allowed, v), "must be one of " + list(allowed)
}

// eachOf checks every element of values with valid and for duplicates, and returns a
// message naming the invalid elements (or the first duplicate), or "".
func eachOf(values []string, valid func(string) bool, what string) string {
	var bad []string
	seen := make(map[string]bool, len(values))
	for _, v := range values {
		if seen[v] {
			return fmt.Sprintf("lists %q twice", v)
		}
		seen[v] = true
		if !valid(v) {
			bad = append(bad, v)
		}
	}
	if len(bad) > 0 {
		return fmt.Sprintf("%s are not valid: %s", what, list(bad))
	}
	return ""
}

// httpURL reports what is wrong with an upstream base URL, or "".
func httpURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return "is required"
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "must be an absolute http or https URL, e.g. https://api.openai.com/v1"
	case u.User != nil:
		return "must not hold credentials; keys come from the key source"
	case u.RawQuery != "" || u.Fragment != "":
		return "must not have a query or fragment"
	case len(s) > 2048:
		return "must be at most 2048 characters"
	}
	return ""
}

// pin reports whether s is a SHA-256 public-key pin, in base64 or hex.
func pin(s string) bool {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) == 32 {
		return true
	}
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// queryTime reads the required RFC 3339 query parameter name, reporting a missing or
// bad one to rep.
func queryTime(c echo.Context, rep *report, name string) (time.Time, bool) {
	s := c.QueryParam(name)
	if s == "" {
		rep.check(name, false, "is required: an RFC 3339 timestamp such as 2026-04-01T00:00:00Z")
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		// An unescaped "+" of a UTC offset arrives as a space.
		t, err = time.Parse(time.RFC3339, strings.ReplaceAll(s, " ", "+"))
	}
	rep.check(name, err == nil, "must be an RFC 3339 timestamp such as 2026-04-01T00:00:00Z")
	return t, err == nil
}
