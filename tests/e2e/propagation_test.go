package e2e

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/signing"
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

// TestForgedPolicyNeverTakesEffect: a process with write access to PC_POLICY but no
// signing key writes a snapshot with a valid schema (every client disabled, at the
// highest version there is), unsigned and then signed with a key of its own. Every
// data plane refuses both and keeps serving the real policy, and the control plane's
// next change still reaches them: the forged version does not hold it back.
func TestForgedPolicyNeverTakesEffect(t *testing.T) {
	t.Parallel()
	s := startStack(t)
	s.seed(t)
	s.waitReady(t)
	token := s.mint(t, "global-app")

	nc := s.natsConnect(t, natsauth.ControlPlane())
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, natsnames.PolicyBucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, natsnames.PolicySnapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	_, _, encoded, err := policy.Unseal(e.Value())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Decode(encoded)
	if err != nil {
		t.Fatal(err)
	}
	snap.Version = math.MaxInt64
	for i := range snap.Clients {
		snap.Clients[i].Enabled = false
	}
	forged, err := policy.Encode(snap)
	if err != nil {
		t.Fatal(err)
	}
	forger, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, reason string
		value        []byte
	}{
		{"unsigned", "unsigned", forged},
		{"signed by the forger's key", "bad_signature", policy.Seal(forged, forger)},
	} {
		if _, err := kv.Put(ctx, natsnames.PolicySnapshotKey, tc.value); err != nil {
			t.Fatal(err)
		}
		for name, dp := range s.dp {
			want := `portcullis_dataplane_policy_snapshots_rejected_total{reason="` + tc.reason + `"} 1`
			waitfor.Within(t, 10*time.Second, name+" to refuse the "+tc.name+" snapshot", func() bool {
				return strings.Contains(metrics(t, dp.MetricsAddr()), want)
			})
			if r := s.call(t, name, token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
				t.Fatalf("%s after the %s snapshot: %d %s", name, tc.name, r.Status, r.Body)
			}
		}
	}

	// The control plane's next change is published over the forgery and applied.
	s.patch(t, "/clients/global-app", map[string]any{"enabled": false})
	for name := range s.dp {
		waitfor.Within(t, 10*time.Second, "the real change on "+name, func() bool {
			r := s.call(t, name, token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
			return r.Status == http.StatusForbidden && r.code() == "client_disabled"
		})
	}
}
