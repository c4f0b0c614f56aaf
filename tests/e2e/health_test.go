package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// TestDeploymentHealthReachesTheControlPlane: an upstream failing opens its
// deployment's breaker on a worker, and the control plane shows it.
func TestDeploymentHealthReachesTheControlPlane(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)
	type answer struct {
		Data []struct {
			Deployment string `json:"deployment"`
			State      string `json:"state"`
		} `json:"data"`
		Workers int `json:"workers"`
	}
	state := func(deployment string) (string, int) {
		var a answer
		if status, _ := s.admin(t, http.MethodGet, "/deployments/health", nil, &a); status != http.StatusOK {
			t.Fatalf("GET /deployments/health = %d", status)
		}
		for _, d := range a.Data {
			if d.Deployment == deployment {
				return d.State, a.Workers
			}
		}
		return "", a.Workers
	}
	waitfor.Within(t, 15*time.Second, "both workers to report openai-eu closed", func() bool {
		st, workers := state("openai-eu")
		return st == "closed" && workers == 2
	})
	s.upstream["eu"].SetFailure(mockupstream.Fail500)
	token := s.mint(t, "eu-app")
	for range 2 { // 3 attempts each: 6 failures open the breaker (threshold 5)
		s.call(t, "eu", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
	}
	took := waitfor.Within(t, 15*time.Second, "the control plane to show openai-eu open", func() bool {
		st, _ := state("openai-eu")
		return st == "open"
	})
	t.Logf("open breaker visible in the control plane after %s", took.Round(100*time.Millisecond))
}
