package keys

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// TestRenewableLeaseIsRenewedThenReadAgain drives the lease keeping of a leased key
// with a real renewable Vault lease: a token with a 3 s TTL and a 6 s max TTL (the
// launcher has no secret engine that leases renewable data, so the token stands in
// for the key's lease). The lease is renewed before its TTL runs out; when Vault will
// not renew it further, a fresh key is read before it expires.
func TestRenewableLeaseIsRenewedThenReadAgain(t *testing.T) {
	v := vaulttest.Start(t)
	logs := &logtest.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := vaultclient.New(context.Background(), vaultclient.Config{Addr: v.Addr, Auth: vaultclient.AuthToken, Token: v.Token}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	mount := v.Unique("kv1")
	if status, _ := v.Do(t, "POST", "sys/mounts/"+mount, map[string]any{"type": "kv", "options": map[string]any{"version": "1"}}); status/100 != 2 {
		t.Fatal("mount kv1")
	}
	if status, _ := v.Do(t, "POST", mount+"/openai", map[string]any{"api_key": "fresh-key", "ttl": "60s"}); status/100 != 2 {
		t.Fatal("write")
	}
	var mu sync.Mutex
	var reasons []string
	m := NewManager(ManagerOptions{Vault: c, WorkerID: "w", Log: log, Access: func(a keyevents.Access) {
		mu.Lock()
		reasons = append(reasons, a.Reason)
		mu.Unlock()
	}})
	t.Cleanup(m.Close)
	s := m.Source(policy.Deployment{Name: "leased", KeySource: policy.KeySourceVaultDynamic, KeyPath: mount + "/openai"}).(*leasedSource)

	tok, err := c.API().Logical().Write("auth/token/create", map[string]any{"ttl": "3s", "explicit_max_ttl": "6s", "renewable": true, "policies": []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	maxEnd := time.Now().Add(6 * time.Second) // the token's explicit max TTL
	lease := vaultclient.Leased{Key: "leased-key", Secret: tok, LeaseID: "token", Renewable: true, Expires: time.Now().Add(3 * time.Second)}
	s.mu.Lock()
	s.cur, s.gen = leasedKey{key: lease.Key, expires: lease.Expires}, 1
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { defer close(done); s.keep(t.Context(), lease, 1) }()

	select {
	case <-done:
	case <-time.After(8 * time.Second):
		t.Fatal("the lease keeper neither renewed to the end nor read a fresh key")
	}
	if !strings.Contains(logs.String(), "deployment key lease renewed") {
		t.Fatalf("the lease was never renewed:\n%s", logs.String())
	}
	if k, err := s.Key(context.Background()); err != nil || k != "fresh-key" {
		t.Fatalf("after the lease's end: %q, %v", k, err)
	}
	if !time.Now().Before(maxEnd) {
		t.Fatal("the fresh key was read after the old lease expired")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 1 || reasons[0] != keyevents.ReasonRenewal {
		t.Fatalf("key-access reasons %v, want one renewal", reasons)
	}
}
