package logging

import (
	"net/url"
	"regexp"
	"strings"
)

// Redacted replaces a credential in what RedactURL returns.
const Redacted = "REDACTED"

// secretParam matches the names of query parameters (and libpq keywords) whose
// values are credentials: password, sslpassword, token, access_token, secret,
// client_secret, key, api_key, apikey, sig, signature, auth, credentials, ...
var secretParam = regexp.MustCompile(`(?i)(pass|pwd|token|secret|key|sig|auth|cred)`)

// libpqSecret matches a credential in a libpq keyword=value string: the keyword and
// its value, quoted or not.
var libpqSecret = regexp.MustCompile(`(?i)\b(\w*(?:pass|pwd|token|secret|key)\w*)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL returns s, a URL to log, without credentials: its user info (the whole
// of it: a NATS token or a user name can be the secret) and the values of query
// parameters named like credentials (password, token, secret, key, sig, ...) are
// replaced by REDACTED. A comma-separated list of URLs (as NATS takes them) is
// redacted URL by URL, and a libpq keyword=value string (host=... password=...) by
// keyword. Something that does not parse as a URL and might hold a credential is
// replaced whole.
func RedactURL(s string) string {
	if s == "" {
		return ""
	}
	if !strings.Contains(s, "://") && strings.Contains(s, "=") && !strings.ContainsAny(s, "?&") {
		return libpqSecret.ReplaceAllString(s, "${1}="+Redacted)
	}
	if strings.Contains(s, ",") {
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = redactOne(strings.TrimSpace(p))
		}
		return strings.Join(parts, ",")
	}
	return redactOne(s)
}

func redactOne(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Opaque != "" && strings.Contains(u.Opaque, "@")) {
		if strings.ContainsAny(s, "@?=") {
			return "(" + Redacted + ": not a valid URL)"
		}
		return s
	}
	if u.User != nil {
		u.User = url.User(Redacted)
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for name, values := range q {
			if secretParam.MatchString(name) {
				for i := range values {
					values[i] = Redacted
				}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if u.Fragment != "" && secretParam.MatchString(u.Fragment) {
		u.Fragment = Redacted
	}
	return u.String()
}
