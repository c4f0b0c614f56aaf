package keys_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/internal/keys"
	"github.com/portcullis-gw/portcullis/shared/keyevents"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// fixture is a real Vault, a client logged in to it, and a manager recording its
// key-access events.
type fixture struct {
	v      *vaulttest.Vault
	c      *vaultclient.Client
	m      *keys.Manager
	logs   *logtest.Buffer
	mu     sync.Mutex
	access []keyevents.Access
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{v: vaulttest.Start(t), logs: &logtest.Buffer{}}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := vaultclient.New(context.Background(), vaultclient.Config{Addr: f.v.Addr, Auth: vaultclient.AuthToken, Token: f.v.Token}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	f.c = c
	f.m = keys.NewManager(keys.ManagerOptions{Vault: c, WorkerID: "w1", Region: "eu", Log: log,
		Access: func(a keyevents.Access) { f.mu.Lock(); f.access = append(f.access, a); f.mu.Unlock() }})
	t.Cleanup(f.m.Close)
	t.Cleanup(func() {
		if strings.Contains(f.logs.String(), "canary") {
			t.Error("a key value reached the log")
		}
	})
	return f
}

func (f *fixture) reasons() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.access {
		out = append(out, a.Reason)
	}
	return out
}

func key(t *testing.T, s keys.Source) string {
	t.Helper()
	k, err := s.Key(context.Background())
	if err != nil {
		t.Fatalf("Key: %v", err)
	}
	return k
}

func TestKVRotationOverlapAndRevocation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	path := "secret/" + f.v.Unique("portcullis/openai-eu")
	d := policy.Deployment{Name: "openai-eu", Provider: "openai", KeySource: policy.KeySourceVault, KeyPath: path}
	if _, err := f.c.WriteKV(ctx, path, "canary-v1", 0); err != nil {
		t.Fatal(err)
	}
	src := f.m.Source(d)
	if got := key(t, src); got != "canary-v1" {
		t.Fatalf("startup key %q", got)
	}
	if again := f.m.Source(d); again != src {
		t.Fatal("an unchanged deployment got a new source")
	}
	ov := src.(keys.Overlapping)
	if _, ok := ov.Other("canary-v1"); ok {
		t.Fatal("another key before any rotation")
	}

	// A rotation with a two-hour overlap: the new key serves, the old one is the
	// retry key.
	if _, err := f.c.WriteKV(ctx, path, "canary-v2", 1); err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(2 * time.Hour)
	if err := f.c.SetRotationMeta(ctx, path, 1, until, nil); err != nil {
		t.Fatal(err)
	}
	f.m.Apply(ctx, keyevents.Event{Kind: keyevents.KindRotated, Deployment: "openai-eu", KeyVersion: 2, PreviousVersion: 1, OverlapUntil: until})
	if got := key(t, src); got != "canary-v2" {
		t.Fatalf("after rotation: key %q", got)
	}
	if other, ok := ov.Other("canary-v2"); !ok || other != "canary-v1" {
		t.Fatalf("during the overlap, Other = %q, %v", other, ok)
	}
	if other, ok := ov.Other("canary-v1"); !ok || other != "canary-v2" {
		t.Fatalf("the old key refused: Other = %q, %v", other, ok)
	}

	// A worker that starts during the overlap holds both keys at once.
	late := keys.NewManager(keys.ManagerOptions{Vault: f.c, WorkerID: "w2"})
	t.Cleanup(late.Close)
	lateSrc := late.Source(d)
	if got := key(t, lateSrc); got != "canary-v2" {
		t.Fatalf("late worker: key %q", got)
	}
	if other, ok := lateSrc.(keys.Overlapping).Other("canary-v2"); !ok || other != "canary-v1" {
		t.Fatalf("late worker during the overlap: Other = %q, %v", other, ok)
	}

	// The overlap ends (the rotator clears it): the periodic check drops the old key.
	if err := f.c.SetRotationMeta(ctx, path, 1, time.Now().Add(-time.Second), nil); err != nil {
		t.Fatal(err)
	}
	f.m.Apply(ctx, keyevents.Event{Kind: keyevents.KindRotated, Deployment: "openai-eu", KeyVersion: 2, PreviousVersion: 1})
	if _, ok := ov.Other("canary-v2"); ok {
		t.Fatal("the old key is still offered after the overlap")
	}

	// A revocation with no successor: the key is dropped at once, and the
	// deployment has no key until a new version is written.
	if err := f.c.SetRotationMeta(ctx, path, 0, time.Time{}, map[int]bool{1: true, 2: true}); err != nil {
		t.Fatal(err)
	}
	f.m.Apply(ctx, keyevents.Event{Kind: keyevents.KindRevoked, Deployment: "openai-eu", PreviousVersion: 2})
	if k, err := src.Key(ctx); err == nil || !errors.Is(err, keys.ErrRevoked) || k != "" {
		t.Fatalf("after a revocation without a successor: %q, %v", k, err)
	}
	if _, err := f.c.WriteKV(ctx, path, "canary-v3", 2); err != nil {
		t.Fatal(err)
	}
	f.m.Apply(ctx, keyevents.Event{Kind: keyevents.KindRotated, Deployment: "openai-eu", KeyVersion: 3, PreviousVersion: 2})
	if got := key(t, src); got != "canary-v3" {
		t.Fatalf("after the successor: key %q", got)
	}
	if _, ok := ov.Other("canary-v3"); ok {
		t.Fatal("a revoked key is offered for a retry")
	}

	got := strings.Join(f.reasons(), ",")
	for _, want := range []string{keyevents.ReasonStartup, keyevents.ReasonRotation} {
		if !strings.Contains(got, want) {
			t.Errorf("key-access reasons %s lack %s", got, want)
		}
	}
	f.mu.Lock()
	for _, a := range f.access {
		if !a.OK || a.Path != path || a.ActorID != "w1" || a.Region != "eu" || a.KeyVersion == 0 {
			t.Errorf("key-access event %+v", a)
		}
	}
	f.mu.Unlock()
}

func TestKVSourceMissingSecretIsAClearErrorAndRetriesAtMostOncePerSecond(t *testing.T) {
	f := newFixture(t)
	src := f.m.Source(policy.Deployment{Name: "d", KeySource: policy.KeySourceVault, KeyPath: "secret/" + f.v.Unique("missing")})
	for range 20 {
		if _, err := src.Key(context.Background()); err == nil || !strings.Contains(err.Error(), "deployment d") {
			t.Fatalf("missing secret: %v", err)
		}
	}
	if strings.Count(f.logs.String(), "reading the deployment's key from vault failed") != 1 {
		t.Fatalf("20 requests within a second read Vault more than once:\n%s", f.logs.String())
	}
}

// TestLeasedKeyIsReadAgainBeforeItExpires uses a lease Vault will not renew (a KV v1
// secret with a ttl): the source reads a fresh key at two thirds of the lease, with
// every Key call in between succeeding, and keeps the old key for a retry until its
// lease ends.
func TestLeasedKeyIsReadAgainBeforeItExpires(t *testing.T) {
	f := newFixture(t)
	mount := f.v.Unique("kv1")
	f.v.Do(t, "POST", "sys/mounts/"+mount, map[string]any{"type": "kv", "options": map[string]any{"version": "1"}})
	write := func(k string) {
		if status, resp := f.v.Do(t, "POST", mount+"/openai", map[string]any{"api_key": k, "ttl": "3s"}); status/100 != 2 {
			t.Fatalf("write: %d %v", status, resp)
		}
	}
	write("canary-lease-a")
	src := f.m.Source(policy.Deployment{Name: "leased", KeySource: policy.KeySourceVaultDynamic, KeyPath: mount + "/openai"})
	if got := key(t, src); got != "canary-lease-a" {
		t.Fatalf("first key %q", got)
	}
	write("canary-lease-b") // what a fresh read returns from now on
	deadline := time.Now().Add(5 * time.Second)
	for key(t, src) != "canary-lease-b" {
		if time.Now().After(deadline) {
			t.Fatal("the key was not read again before its lease ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if other, ok := src.(keys.Overlapping).Other("canary-lease-b"); !ok || other != "canary-lease-a" {
		t.Fatalf("the old leased key is not offered for a retry while its lease lasts: %q, %v", other, ok)
	}
	if got := strings.Join(f.reasons(), ","); !strings.Contains(got, keyevents.ReasonRenewal) {
		t.Fatalf("key-access reasons %s lack renewal", got)
	}
}

func TestEnvKeysNeedTheDevFlag(t *testing.T) {
	env := func(string) string { return "canary-env" }
	d := policy.Deployment{Name: "d", KeySource: policy.KeySourceEnv, KeyPath: "OPENAI_API_KEY"}
	refused := keys.NewManager(keys.ManagerOptions{Getenv: env}).Source(d)
	if _, err := refused.Key(context.Background()); err == nil || !strings.Contains(err.Error(), "PORTCULLIS_DEV_ALLOW_ENV_KEYS") {
		t.Fatalf("env key without the flag: %v", err)
	}
	allowed := keys.NewManager(keys.ManagerOptions{Getenv: env, AllowEnvKeys: true}).Source(d)
	if k, err := allowed.Key(context.Background()); err != nil || k != "canary-env" {
		t.Fatalf("env key with the flag: %q, %v", k, err)
	}
	noVault := keys.NewManager(keys.ManagerOptions{}).Source(policy.Deployment{Name: "v", KeySource: policy.KeySourceVault, KeyPath: "secret/x"})
	if _, err := noVault.Key(context.Background()); err == nil || !strings.Contains(err.Error(), "PORTCULLIS_VAULT_ADDR") {
		t.Fatalf("vault key without a vault: %v", err)
	}
}

// TestPeriodicCheckFindsAMissedRotation: a worker that missed the rotation event
// finds the new version at its next metadata check.
func TestPeriodicCheckFindsAMissedRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m := keys.NewManager(keys.ManagerOptions{Vault: f.c, WorkerID: "w3", RefreshInterval: 200 * time.Millisecond,
		Access: func(a keyevents.Access) { f.mu.Lock(); f.access = append(f.access, a); f.mu.Unlock() }})
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
		m.Close()
	})
	path := "secret/" + f.v.Unique("portcullis/missed")
	if _, err := f.c.WriteKV(ctx, path, "canary-m1", 0); err != nil {
		t.Fatal(err)
	}
	src := m.Source(policy.Deployment{Name: "missed", KeySource: policy.KeySourceVault, KeyPath: path})
	if got := key(t, src); got != "canary-m1" {
		t.Fatalf("first key %q", got)
	}
	if _, err := f.c.WriteKV(ctx, path, "canary-m2", 1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for key(t, src) != "canary-m2" {
		if time.Now().After(deadline) {
			t.Fatal("the periodic check did not find the new version")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := strings.Join(f.reasons(), ","); !strings.Contains(got, keyevents.ReasonRefresh) {
		t.Fatalf("key-access reasons %s lack refresh", got)
	}
}
