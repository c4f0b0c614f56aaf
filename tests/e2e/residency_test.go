package e2e

import (
	"net/http"
	"testing"
	"time"
)

func TestResidencyKeepsEUTrafficInEU(t *testing.T) {
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

	// An eu client is served from eu even when it enters through the us worker.
	for _, region := range []string{"eu", "us", "eu", "us"} {
		r := s.call(t, region, euToken, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
		if r.Status != http.StatusOK {
			t.Fatalf("eu client via %s: %d %s", region, r.Status, r.Body)
		}
		if got := r.Header.Get("x-portcullis-deployment"); got != "openai-eu" {
			t.Fatalf("eu client via %s served by %q", region, got)
		}
		if got := r.Header.Get("x-portcullis-region"); got != region {
			t.Fatalf("x-portcullis-region = %q, want the worker's %q", got, region)
		}
	}
	if n := len(s.upstream["eu"].Requests()); n != 4 {
		t.Fatalf("eu spy saw %d requests, want 4", n)
	}
	if n := len(s.upstream["us"].Requests()); n != 0 {
		t.Fatalf("us spy saw %d requests from an eu client", n)
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
	for _, region := range []string{"eu", "us"} {
		waitFor(t, 10*time.Second, "no_compliant_upstream on "+region, func() bool {
			r := s.call(t, region, euToken, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
			return r.Status == http.StatusServiceUnavailable && r.code() == "no_compliant_upstream"
		})
	}
	// Until the change propagated, EU requests still went to EU; from now on none may go anywhere.
	s.upstream["eu"].Reset()
	for _, region := range []string{"eu", "us"} {
		if r := s.call(t, region, euToken, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")); r.code() != "no_compliant_upstream" {
			t.Fatalf("eu client via %s after EU removal: %d %s", region, r.Status, r.Body)
		}
	}
	if n := len(s.upstream["us"].Requests()); n != 0 {
		t.Fatalf("us spy saw %d requests after EU deployments were removed", n)
	}
	if n := len(s.upstream["eu"].Requests()); n != 0 {
		t.Fatalf("eu spy saw %d requests after its deployment was removed", n)
	}
}
