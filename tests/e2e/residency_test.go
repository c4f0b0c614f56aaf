package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

func TestResidencyKeepsEUTrafficInEU(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)
	euToken := s.mint(t, "eu-app")
	globalToken := s.mint(t, "global-app")

	// The spies are live: a client without residency is served in the worker's own region.
	r := s.call(t, "us", globalToken, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
	if r.Status != http.StatusOK || r.Header.Get("x-portcullis-deployment") != "openai-us" {
		t.Fatalf("global client on us: %d deployment %q: %s", r.Status, r.Header.Get("x-portcullis-deployment"), r.Body)
	}
	s.upstream["us"].Reset()

	// An eu client is served from eu through the eu worker, and refused at the door
	// of the us worker: 421 wrong_region naming the eu endpoint, nothing sent to any
	// upstream, and no event in PC_AUDIT_US.
	var rule struct {
		EndpointURL string `json:"endpoint_url"`
	}
	s.admin(t, "GET", "/residency-rules/eu", nil, &rule)
	if rule.EndpointURL == "" {
		t.Fatal("the seeded eu residency rule has no endpoint_url")
	}
	for _, region := range []string{"eu", "us", "eu", "us"} {
		r := s.callWithID(t, region, euToken, "door-"+region, chatBody("gpt-4o-mini"))
		if region == "us" {
			if r.Status != http.StatusMisdirectedRequest || r.code() != "wrong_region" || !strings.Contains(string(r.Body), rule.EndpointURL) {
				t.Fatalf("eu client via us: %d %s, want 421 wrong_region naming %s", r.Status, r.Body, rule.EndpointURL)
			}
			continue
		}
		if r.Status != http.StatusOK || r.Header.Get("x-portcullis-deployment") != "openai-eu" {
			t.Fatalf("eu client via eu: %d deployment %q: %s", r.Status, r.Header.Get("x-portcullis-deployment"), r.Body)
		}
	}
	if n := len(s.upstream["eu"].Requests()); n != 2 {
		t.Fatalf("eu spy saw %d requests, want 2", n)
	}
	if n := len(s.upstream["us"].Requests()); n != 0 {
		t.Fatalf("us spy saw %d requests from an eu client", n)
	}
	// A later request through us is in PC_AUDIT_US once the refusals would have been.
	marker := s.callWithID(t, "us", globalToken, "door-marker", chatBody("gpt-4o-mini"))
	s.waitAudited(t, "us", []string{"door-marker"}, 15*time.Second)
	if marker.Status != http.StatusOK {
		t.Fatalf("global client via us: %d %s", marker.Status, marker.Body)
	}
	s.upstream["us"].Reset() // the marker's call
	for _, line := range strings.Split(streamContents(t, s), "\n") {
		if strings.Contains(line, `"region":"us"`) && strings.Contains(line, `"client_id":"eu-app"`) {
			t.Fatalf("PC_AUDIT_US holds an event of the eu client: %s", line)
		}
	}
	_, eu := s.waitAudited(t, "eu", []string{"door-eu"}, 15*time.Second)
	if len(eu["door-us"]) != 0 {
		t.Fatal("the refusal at the us door was audited in eu: the choice is not to audit it at all (docs/data-plane.md)")
	}

	// With every EU deployment gone the request fails closed; it never falls over to us.
	var models struct {
		Items []struct {
			ID         string `json:"id"`
			Deployment string `json:"deployment"`
		} `json:"items"`
	}
	s.admin(t, "GET", "/models?limit=500", nil, &models)
	for _, m := range models.Items {
		if m.Deployment == "openai-eu" {
			s.mustAdmin(t, http.StatusNoContent, "DELETE", "/models/"+m.ID, nil)
		}
	}
	s.mustAdmin(t, http.StatusNoContent, "DELETE", "/deployments/openai-eu", nil)
	waitfor.Within(t, 10*time.Second, "no_compliant_upstream on eu", func() bool {
		r := s.call(t, "eu", euToken, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
		return r.Status == http.StatusServiceUnavailable && r.code() == "no_compliant_upstream"
	})
	// Until the change propagated, EU requests still went to EU; from now on none may go anywhere.
	s.upstream["eu"].Reset()
	if r := s.call(t, "eu", euToken, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")); r.code() != "no_compliant_upstream" {
		t.Fatalf("eu client via eu after EU removal: %d %s", r.Status, r.Body)
	}
	if n := len(s.upstream["us"].Requests()); n != 0 {
		t.Fatalf("us spy saw %d requests after EU deployments were removed", n)
	}
	if n := len(s.upstream["eu"].Requests()); n != 0 {
		t.Fatalf("eu spy saw %d requests after its deployment was removed", n)
	}
}

// TestResidencyUnderChaos sends 2,000 requests from an eu client (through the eu
// worker) and a client without residency (through both workers) while both upstreams fail at random
// (5xx, 429, resets), retries and breakers included. The us upstream must never see
// an eu request, and every eu answer an upstream gave came from the eu deployment.
func TestResidencyUnderChaos(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)
	for _, region := range []string{"eu", "us"} { // breakers that open, and close again, during the run
		s.patch(t, "/deployments/openai-"+region, map[string]any{
			"circuit_breaker": map[string]any{"failure_threshold": 30, "reset_timeout_seconds": 1}})
	}
	euToken := s.limitedClient(t, "chaos-eu", "eu", 0, 0, 0)
	anyToken := s.limitedClient(t, "chaos-any", "", 0, 0, 0)

	stop := make(chan struct{})
	var chaos sync.WaitGroup
	chaos.Go(func() {
		modes := []mockupstream.Failure{mockupstream.FailNone, mockupstream.FailNone, mockupstream.FailNone,
			mockupstream.FailNone, mockupstream.FailNone, mockupstream.Fail500, mockupstream.Fail429, mockupstream.FailReset}
		for {
			select {
			case <-stop:
				s.upstream["eu"].SetFailure(mockupstream.FailNone)
				s.upstream["us"].SetFailure(mockupstream.FailNone)
				return
			case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
				s.upstream["eu"].SetFailure(modes[rand.IntN(len(modes))])
				s.upstream["us"].SetFailure(modes[rand.IntN(len(modes))])
			}
		}
	})

	const total = 2000
	var next atomic.Int64
	var euServed, euRefused atomic.Int64
	var mu sync.Mutex
	codes := map[string]int{}
	euIDs := map[string]string{} // the gateway's request ids of eu requests: the one the upstream sees
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > total {
					return
				}
				eu := n%2 == 0
				token, id := anyToken, fmt.Sprintf("any-%d", n)
				if eu {
					token, id = euToken, fmt.Sprintf("eu-%d", n)
				}
				worker := []string{"eu", "us"}[rand.IntN(2)]
				if eu {
					worker = "eu" // the us worker refuses it at the door (TestResidencyKeepsEUTrafficInEU)
				}
				r := s.callWithID(t, worker, token, id, chatBody("gpt-4o-mini"))
				if !eu {
					continue
				}
				mu.Lock()
				euIDs[r.Header.Get("X-Request-Id")] = id
				mu.Unlock()
				switch dep := r.Header.Get("x-portcullis-deployment"); {
				case r.Status == http.StatusOK && dep == "openai-eu":
					euServed.Add(1)
				case r.Status == http.StatusOK:
					t.Errorf("eu request %s served by %q", id, dep)
				case dep != "" && dep != "openai-eu":
					t.Errorf("eu request %s failed at %q", id, dep)
				default:
					euRefused.Add(1)
					mu.Lock()
					codes[fmt.Sprint(r.Status, " ", r.code())]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	chaos.Wait()
	for _, req := range s.upstream["us"].Requests() {
		if id, ok := euIDs[req.Header.Get("X-Request-Id")]; ok {
			t.Fatalf("the us upstream received eu request %s", id)
		}
	}
	t.Logf("eu requests: %d served in eu, %d refused or failed %v; us upstream calls: %d",
		euServed.Load(), euRefused.Load(), codes, len(s.upstream["us"].Requests()))
	if euServed.Load() < total/10 {
		t.Fatalf("only %d eu requests were served: retries should absorb most of the chaos", euServed.Load())
	}
}
