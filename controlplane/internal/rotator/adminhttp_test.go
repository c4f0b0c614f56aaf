package rotator

import (
	"net/url"
	"strings"
	"testing"
)

func TestCheckAdminURL(t *testing.T) {
	for _, s := range []string{"https://api.openai.com", "https://api.openai.com/", "https://admin-proxy.internal:8443/openai",
		"http://127.0.0.1:9100", "http://localhost:9100", "http://[::1]:9100/", "http://127.0.0.2"} {
		if reason := CheckAdminURL(s); reason != "" {
			t.Errorf("CheckAdminURL(%q) = %q, want accepted", s, reason)
		}
	}
	for s, want := range map[string]string{
		"http://api.openai.com":        "https",
		"http://10.0.0.1:9100":         "https",
		"ftp://api.openai.com":         "https",
		"api.openai.com":               "absolute",
		"":                             "absolute",
		"https://u:p@api.openai.com":   "user info",
		"https://api.openai.com/?a=b":  "query",
		"https://api.openai.com/#frag": "fragment",
	} {
		if reason := CheckAdminURL(s); !strings.Contains(reason, want) {
			t.Errorf("CheckAdminURL(%q) = %q, want a refusal naming %q", s, reason, want)
		}
	}
}

// TestSameOrigin: the last check before the admin key is sent refuses any other
// scheme, host or port.
func TestSameOrigin(t *testing.T) {
	admin, _ := url.Parse("https://api.openai.com")
	for s, ok := range map[string]bool{
		"https://api.openai.com/v1/organization/projects/p/service_accounts": true,
		"https://API.openai.com/v1/x":                                        true,
		"http://api.openai.com/v1/x":                                         false,
		"https://api.openai.com:8443/v1/x":                                   false,
		"https://api.openai.com.evil.test/x":                                 false,
		"https://evil.test/v1/x":                                             false,
	} {
		u, _ := url.Parse(s)
		if err := sameOrigin(u, admin); (err == nil) != ok {
			t.Errorf("sameOrigin(%s) = %v, want ok %v", s, err, ok)
		}
	}
}
