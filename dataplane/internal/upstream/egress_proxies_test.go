package upstream

import (
	"errors"
	"net/http"
	"testing"
)

// TestWithProxies: the policy's proxies need the worker's allowlist, which must let
// the proxy through; "*.domain" in no_proxy reaches the domain's hosts directly.
func TestWithProxies(t *testing.T) {
	open, err := NewEgress("", "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.WithProxies("http://proxy.internal:3128", "", nil); err == nil {
		t.Fatal("a worker without an allowlist took the policy's proxy")
	}
	e, err := NewEgress("", "", "", "proxy.internal:3128,api.openai.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.WithProxies("http://evil.example:3128", "", nil); !errors.Is(err, ErrHostNotAllowed) {
		t.Fatalf("a proxy outside the allowlist: %v", err)
	}
	p, err := e.WithProxies("http://proxy.internal:3128", "", []string{"*.internal"})
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{"http://ollama.infra.internal:11434/v1": "", "http://api.openai.com/v1": "proxy.internal:3128"} {
		r, _ := http.NewRequest(http.MethodGet, host, nil)
		u, err := p.proxy(r)
		got := ""
		if u != nil {
			got = u.Host
		}
		if err != nil || got != want {
			t.Errorf("%s: proxy %q %v, want %q", host, got, err, want)
		}
	}
}
