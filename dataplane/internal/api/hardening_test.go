package api

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// recordedAudit is an Auditor that keeps every event.
type recordedAudit struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recordedAudit) Publish(e audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	return nil
}

func (r *recordedAudit) Accepting() error { return nil }

func (r *recordedAudit) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.events...)
}

// atLeast returns the events once there are n or more: a 200's event is made after
// its answer is flushed, so it can reach the auditor after the client has the
// answer. It fails the test after 10 s.
func (r *recordedAudit) atLeast(t *testing.T, n int) []audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if events := r.all(); len(events) >= n {
			return events
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d audit events after 10 s, want %d", len(r.all()), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTierCapsOnChoicesAndOutput: a tier's max_choices refuses a larger n with a 400
// naming n, its max_output_tokens refuses a larger max_tokens and caps the default;
// within the caps every choice is reserved.
func TestTierCapsOnChoicesAndOutput(t *testing.T) {
	rec := &reservations{}
	up := newUpstream(t, answerJSON(200, chatOK))
	g := newGatewayPolicy(t, func(s *policy.Snapshot) {
		s.Tiers[0].MaxChoices, s.Tiers[0].MaxOutputTokens = 8, 2000
	}, func(o *Options) { o.Limiter = rec }, nil, deployment{name: "d1", kind: policy.ProviderOpenAI, model: "gpt", up: up})
	const prompt = reservationPrompt
	checkReservations(t, g, rec, up, "tier", []reservationCase{
		{name: "n 8 × 1000 is within the cap", path: "/v1/chat/completions", body: `{"model":"gpt","n":8,"max_tokens":1000,` + prompt + `}`, want: 8000},
		{name: "n 9 is over the tier's cap", path: "/v1/chat/completions", body: `{"model":"gpt","n":9,"max_tokens":1000,` + prompt + `}`, wantParam: "n"},
		{name: "best_of 9 is over the tier's cap", path: "/v1/completions", body: `{"model":"gpt","best_of":9,"prompt":"hi"}`, wantParam: "best_of"},
		{name: "max_tokens over the tier's cap", path: "/v1/chat/completions", body: `{"model":"gpt","max_tokens":2001,` + prompt + `}`, wantParam: "max_tokens"},
		{name: "max_completion_tokens over the tier's cap", path: "/v1/chat/completions", body: `{"model":"gpt","max_completion_tokens":5000,` + prompt + `}`, wantParam: "max_completion_tokens"},
		{name: "messages max_tokens over the tier's cap", path: messagesRoute, body: `{"model":"gpt","max_tokens":2001,` + prompt + `}`, wantParam: "max_tokens"},
		{name: "no max_tokens: the default is capped", path: "/v1/chat/completions", body: `{"model":"gpt",` + prompt + `}`, want: 2000},
		{name: "embeddings have no choices", path: "/v1/embeddings", body: `{"model":"gpt","input":"hi","n":50}`, want: 0},
	})
}

// sendSlowly sends a request's headers and the first bytes of a body declared much
// longer, then reads the answer, which must come before the rest of the body.
func sendSlowly(t *testing.T, g *gateway, path, token string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"+
		"Authorization: Bearer "+token+"\r\nX-Request-Id: mine-1\r\nContent-Length: 4194304\r\n\r\n{\"model\":"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second)) // the body would take a minute to time out
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer before the body arrived: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestWrongRegionIsRefusedAtTheDoor: a client whose residency does not allow the
// worker's region gets 421 wrong_region naming its residency's endpoint, before
// its body is read; nothing reaches an upstream and no audit event is written in
// this region.
func TestWrongRegionIsRefusedAtTheDoor(t *testing.T) {
	up := newUpstream(t, answerJSON(200, chatOK))
	rec := &recordedAudit{}
	g := newGatewayPolicy(t, func(s *policy.Snapshot) {
		s.ResidencyRules = []policy.ResidencyRule{
			{Residency: "us", AllowedRegions: []string{"us"}, EndpointURL: "https://us.gateway.example"},
			{Residency: "apac", AllowedRegions: []string{"apac"}},
		}
		s.Clients = append(s.Clients,
			policy.Client{ClientID: "us-app", Tenant: "t", Tier: "all", Residency: "us", Enabled: true},
			policy.Client{ClientID: "apac-app", Tenant: "t", Tier: "all", Residency: "apac", Enabled: true})
	}, func(o *Options) { o.Audit = rec }, nil, deployment{name: "d1", kind: policy.ProviderOpenAI, model: "gpt", up: up})

	for _, tc := range []struct{ client, path, want string }{
		{client: "us-app", path: "/v1/chat/completions", want: "call https://us.gateway.example"},
		{client: "us-app", path: messagesRoute, want: "call https://us.gateway.example"},
		{client: "apac-app", path: "/v1/embeddings", want: "a region your residency allows"},
	} {
		resp := sendSlowly(t, g, tc.path, tc.client)
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(string(raw), tc.want) ||
			(tc.path != messagesRoute && !strings.Contains(string(raw), string(apierr.WrongRegion))) {
			t.Fatalf("%s on %s: %d %s, want 421 %s saying %q", tc.client, tc.path, resp.StatusCode, raw, apierr.WrongRegion, tc.want)
		}
	}
	if got := g.post(t, "/v1/chat/completions", chatGPT); got.status != 200 {
		t.Fatalf("a client without residency answered %d %s", got.status, got.body)
	}
	if n := len(up.seen()); n != 1 {
		t.Fatalf("the upstream saw %d calls, want only the unrestricted client's", n)
	}
	for _, e := range rec.atLeast(t, 1) {
		if e.ClientID != "c1" {
			t.Fatalf("an audit event of %s was written in region eu: %+v", e.ClientID, e)
		}
	}
	if len(rec.all()) != 1 {
		t.Fatalf("%d audit events, want the unrestricted client's one", len(rec.all()))
	}
}

// blockingVerifier holds every verification until release is closed.
type blockingVerifier struct {
	entered chan struct{}
	release chan struct{}
}

func (v blockingVerifier) Verify(ctx context.Context, authorization string, r auth.Revocations) (auth.Identity, error) {
	v.entered <- struct{}{}
	<-v.release
	return tokenIsClient{}.Verify(ctx, authorization, r)
}

// TestUnauthenticatedRequestsAreBounded: beyond MaxUnauthenticated requests being
// authenticated at once, a request is refused with 503 overloaded and Retry-After;
// once they finish, requests are served again.
func TestUnauthenticatedRequestsAreBounded(t *testing.T) {
	up := newUpstream(t, answerJSON(200, chatOK))
	v := blockingVerifier{entered: make(chan struct{}, 8), release: make(chan struct{})}
	g := newGatewayWith(t, func(o *Options) { o.Verifier, o.MaxUnauthenticated = v, 2 }, nil,
		deployment{name: "d1", kind: policy.ProviderOpenAI, model: "gpt", up: up})
	var wg sync.WaitGroup
	held := make(chan answer, 2)
	for range 2 {
		wg.Go(func() { held <- g.post(t, "/v1/chat/completions", chatGPT) })
	}
	<-v.entered
	<-v.entered
	got := g.post(t, "/v1/chat/completions", chatGPT)
	if got.status != http.StatusServiceUnavailable || got.code != string(apierr.Overloaded) || got.header.Get("Retry-After") != "1" {
		t.Fatalf("third request: %d %s Retry-After %q, want 503 overloaded with Retry-After 1", got.status, got.body, got.header.Get("Retry-After"))
	}
	close(v.release)
	wg.Wait()
	close(held)
	for a := range held {
		if a.status != 200 {
			t.Fatalf("a held request answered %d %s", a.status, a.body)
		}
	}
	if got := g.post(t, "/v1/chat/completions", chatGPT); got.status != 200 {
		t.Fatalf("after the burst: %d %s", got.status, got.body)
	}
}

// TestAuditEventKeepsTheClientsIDApartAndItsForwardedSource: the event's request_id
// is the gateway's, the client's X-Request-Id is client_request_id, and source_net
// comes from X-Forwarded-For only when the peer is a trusted proxy.
func TestAuditEventKeepsTheClientsIDApartAndItsForwardedSource(t *testing.T) {
	for _, tc := range []struct {
		name, trusted, want string
	}{
		{name: "trusted proxy", trusted: "127.0.0.1/32", want: "203.0.113.0/24"},
		{name: "no trusted proxies", want: "127.0.0.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, answerJSON(200, chatOK))
			rec := &recordedAudit{}
			tp, err := ParseTrustedProxies(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			g := newGatewayWith(t, func(o *Options) { o.Audit, o.TrustedProxies = rec, tp }, nil,
				deployment{name: "d1", kind: policy.ProviderOpenAI, model: "gpt", up: up})
			req, _ := http.NewRequest(http.MethodPost, g.url+"/v1/chat/completions", strings.NewReader(chatGPT))
			req.Header.Set("Authorization", "Bearer c1")
			req.Header.Set("X-Request-Id", "mine-1")
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			events := rec.atLeast(t, 1)
			if len(events) != 1 {
				t.Fatalf("%d events", len(events))
			}
			e := events[0]
			if e.RequestID != resp.Header.Get(HeaderRequestID) || e.RequestID == "mine-1" || e.ClientRequestID != "mine-1" ||
				resp.Header.Get(HeaderClientRequestID) != "mine-1" {
				t.Fatalf("event request_id %q client_request_id %q; answer %q / %q", e.RequestID, e.ClientRequestID,
					resp.Header.Get(HeaderRequestID), resp.Header.Get(HeaderClientRequestID))
			}
			if e.SourceNet != tc.want {
				t.Fatalf("source_net %q, want %q", e.SourceNet, tc.want)
			}
		})
	}
}
