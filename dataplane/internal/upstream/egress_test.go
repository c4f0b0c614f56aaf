package upstream_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
)

// forwardProxy is a plain-HTTP forward proxy that counts what it forwards.
func forwardProxy(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		n.Add(1)
		out := r.Clone(r.Context())
		out.RequestURI = ""
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestEgressGoesThroughTheConfiguredProxy(t *testing.T) {
	var s seen
	up := httptest.NewServer(recorder(t, &s))
	t.Cleanup(up.Close)
	proxy, forwarded := forwardProxy(t)
	eg, err := upstream.NewEgress(proxy.URL, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	target, err := upstream.New(deployment(up.URL), upstream.Options{Egress: eg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(target.CloseIdle)
	resp, _, err := target.Send(context.Background(), upstream.Call{Path: upstream.PathChatCompletions, Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s.mu.Lock()
	path := s.path
	s.mu.Unlock()
	if forwarded.Load() != 1 || path != upstream.PathChatCompletions {
		t.Fatalf("proxy forwarded %d, upstream saw %q", forwarded.Load(), path)
	}

	// A host on the no-proxy list is called directly.
	direct, err := upstream.NewEgress(proxy.URL, "", "127.0.0.1", "")
	if err != nil {
		t.Fatal(err)
	}
	target, err = upstream.New(deployment(up.URL), upstream.Options{Egress: direct})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(target.CloseIdle)
	resp, _, err = target.Send(context.Background(), upstream.Call{Path: upstream.PathChatCompletions, Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if forwarded.Load() != 1 {
		t.Fatal("a no-proxy host went through the proxy")
	}
}

func TestEgressAllowlistRefusesUnlistedHosts(t *testing.T) {
	eg, err := upstream.NewEgress("", "", "", "api.openai.com, *.openai.azure.com, 127.0.0.1:9100")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"api.openai.com:443", true},
		{"API.OpenAI.com:443", true},
		{"eu.openai.azure.com:443", true},
		{"openai.azure.com:443", false},
		{"127.0.0.1:9100", true},
		{"127.0.0.1:9101", false},
		{"evil.example.com:443", false},
	} {
		if got := eg.Allowed(tc.host); got != tc.want {
			t.Errorf("Allowed(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
	d := deployment("https://evil.example.com")
	if _, err := upstream.New(d, upstream.Options{Egress: eg}); !errors.Is(err, upstream.ErrHostNotAllowed) {
		t.Fatalf("New of an unlisted host = %v, want ErrHostNotAllowed", err)
	}
	if _, err := upstream.NewEgress("", "", "", "evil.*.com"); err == nil || !strings.Contains(err.Error(), "wildcard") {
		t.Fatalf("a wildcard in the middle = %v, want an error", err)
	}
	if _, err := upstream.NewEgress("ftp://proxy", "", "", ""); err == nil {
		t.Fatal("an ftp proxy was accepted")
	}
}
