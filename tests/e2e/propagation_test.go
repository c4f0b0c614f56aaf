package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// propagationBound is the acceptance bound on policy propagation from an admin API
// commit to every data plane (issue 2, acceptance 2).
const propagationBound = 2 * time.Second

func TestPolicyChangesReachEveryDataPlane(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)

	s.mustAdmin(t, http.StatusCreated, "POST", "/clients", map[string]any{"client_id": "new-app", "tenant": "demo", "tier": "default", "residency": "global"})
	token := s.mint(t, "new-app")
	for _, region := range []string{"eu", "us"} {
		took := waitfor.Within(t, propagationBound, "new client admitted on "+region, func() bool {
			return s.call(t, region, token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")).Status == http.StatusOK
		})
		t.Logf("new client admitted on %s after %v", region, took)
	}

	s.patch(t, "/clients/new-app", map[string]any{"enabled": false})
	for _, region := range []string{"eu", "us"} {
		took := waitfor.Within(t, propagationBound, "disabled client refused on "+region, func() bool {
			r := s.call(t, region, token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
			return r.Status == http.StatusForbidden && r.code() == "client_disabled"
		})
		t.Logf("disabled client refused on %s after %v", region, took)
	}
}
