package policycache_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/signing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func connect(t *testing.T, s *natstest.Server) jetstream.JetStream {
	t.Helper()
	_, js := s.Connect(t)
	return js
}

func createBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{
		Bucket: natsnames.PolicyBucket, History: 5, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return kv
}

func snapshot(version int64, clients ...string) *policy.Snapshot {
	s := &policy.Snapshot{
		SchemaVersion: policy.SchemaVersion, Version: version, GeneratedAt: time.Now().UTC(),
		Tenants:   []policy.Tenant{{Name: "t"}},
		Tiers:     []policy.Tier{{Name: "tier", AllowedModels: []string{"m"}, AllowedOperations: policy.Operations}},
		Providers: []policy.Provider{{Name: "openai", Kind: policy.ProviderOpenAI}},
		Deployments: []policy.Deployment{{Name: "d", Provider: "openai", Region: "eu", Kind: policy.KindCloud,
			BaseURL: "http://127.0.0.1:1", KeySource: policy.KeySourceNone, TLS: policy.TLS{Verify: true}, TimeoutSeconds: 30, Enabled: true}},
		Models: []policy.Model{{ID: "m", Name: "m", Deployment: "d", UpstreamModel: "m"}},
	}
	for _, c := range clients {
		s.Clients = append(s.Clients, policy.Client{ClientID: c, Tenant: "t", Tier: "tier", Enabled: true})
	}
	return s
}

func put(t *testing.T, kv jetstream.KeyValue, value []byte) {
	t.Helper()
	if _, err := kv.Put(context.Background(), natsnames.PolicySnapshotKey, value); err != nil {
		t.Fatalf("put snapshot: %v", err)
	}
}

// encode is s encoded and sealed by the tests' policy signing key.
func encode(t *testing.T, s *policy.Snapshot) []byte {
	t.Helper()
	return policy.Seal(encodeUnsigned(t, s), testSigner)
}

func encodeUnsigned(t *testing.T, s *policy.Snapshot) []byte {
	t.Helper()
	b, err := policy.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testSigner signs the tests' snapshots; testKeys, its public key, is every cache's
// Verifier.
var testSigner, testKeys = func() (*signing.Signer, *signing.Verifier) {
	s, err := signing.Generate()
	if err != nil {
		panic(err)
	}
	v, err := signing.ParsePublicKeys(s.PublicPEM())
	if err != nil {
		panic(err)
	}
	return s, v
}()

type harness struct {
	cache *policycache.Cache
	reg   *prometheus.Registry
	logs  *logtest.Buffer
}

// runCache starts a Cache on js and stops it when t ends.
func runCache(t *testing.T, js jetstream.JetStream) *harness {
	t.Helper()
	h := &harness{reg: prometheus.NewRegistry(), logs: &logtest.Buffer{}}
	var err error
	h.cache, err = policycache.New(policycache.Options{
		JetStream: js, Region: "eu", Log: slog.New(slog.NewJSONHandler(io.MultiWriter(h.logs, t.Output()), nil)),
		Registerer: h.reg, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Verifier: testKeys,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.cache.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// rejected reads the policy_snapshots_rejected_total counter for reason.
func (h *harness) rejected(t *testing.T, reason string) float64 {
	t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "portcullis_dataplane_policy_snapshots_rejected_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no rejected counter for reason %q", reason)
	return 0
}

func TestWaitsForTheBucketThenAppliesTheFirstSnapshot(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{NoConn: true})
	js := connect(t, s)
	h := runCache(t, js)

	waitfor.That(t, "the cache to report the missing bucket", func() bool {
		return bytes.Contains([]byte(h.logs.String()), []byte("waiting for the policy bucket"))
	})
	if h.cache.Current() != nil || h.cache.Version() != 0 {
		t.Fatal("cache has a policy before any snapshot was published")
	}
	if _, err := js.KeyValue(context.Background(), natsnames.PolicyBucket); err == nil {
		t.Fatal("the cache created the policy bucket; only the control plane may")
	}
	kv := createBucket(t, js)
	put(t, kv, encode(t, snapshot(1, "a")))
	waitfor.That(t, "version 1", func() bool { return h.cache.Version() == 1 })
	if _, ok := h.cache.Current().Client("a"); !ok {
		t.Fatal("client a missing from the compiled policy")
	}
}

func TestBadSnapshotsKeepTheLastGoodOne(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{NoConn: true})
	js := connect(t, s)
	kv := createBucket(t, js)
	h := runCache(t, js)
	put(t, kv, encode(t, snapshot(5, "good")))
	waitfor.That(t, "version 5", func() bool { return h.cache.Version() == 5 })

	unknownSchema := snapshot(6, "future")
	unknownSchema.SchemaVersion = policy.SchemaVersion + 1
	dangling := snapshot(7, "dangling")
	dangling.Models[0].Deployment = "nowhere"

	tests := []struct {
		name   string
		value  []byte
		reason string
	}{
		{name: "garbage", value: []byte("definitely not gzip"), reason: "unsigned"},
		{name: "signed garbage", value: policy.Seal([]byte("definitely not gzip"), testSigner), reason: "invalid"},
		{name: "unsigned", value: encodeUnsigned(t, snapshot(9, "forged")), reason: "unsigned"},
		{name: "signed by another key", value: policy.Seal(encodeUnsigned(t, snapshot(9, "forged")), otherSigner(t)), reason: "bad_signature"},
		{name: "unknown schema version", value: encode(t, unknownSchema), reason: "invalid"},
		{name: "dangling reference", value: encode(t, dangling), reason: "invalid"},
		{name: "older version", value: encode(t, snapshot(4, "old")), reason: "stale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.cache.Current()
			count := h.rejected(t, tt.reason)
			put(t, kv, tt.value)
			waitfor.That(t, "the snapshot to be rejected", func() bool { return h.rejected(t, tt.reason) == count+1 })
			if h.cache.Current() != before || h.cache.Version() != 5 {
				t.Fatalf("policy changed to version %d after a rejected snapshot", h.cache.Version())
			}
			if _, ok := h.cache.Current().Client("good"); !ok {
				t.Fatal("the last good policy is no longer served")
			}
		})
	}

	t.Run("an equal version is skipped silently", func(t *testing.T) {
		before := h.cache.Current()
		put(t, kv, encode(t, snapshot(5, "same-version")))
		put(t, kv, encode(t, snapshot(8, "next")))
		waitfor.That(t, "version 8", func() bool { return h.cache.Version() == 8 })
		if h.rejected(t, "stale") != 1 {
			t.Fatal("an equal version counted as stale")
		}
		if before == h.cache.Current() {
			t.Fatal("policy pointer did not change")
		}
	})
}

func TestUnchangedDeploymentsKeepTheirUpstream(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{NoConn: true})
	js := connect(t, s)
	kv := createBucket(t, js)
	h := runCache(t, js)
	target := func() any {
		m, ok := h.cache.Current().Model("m")
		if !ok {
			t.Fatal("model m missing")
		}
		return m.Routes[0].Deployment.Target
	}

	put(t, kv, encode(t, snapshot(1, "a")))
	waitfor.That(t, "version 1", func() bool { return h.cache.Version() == 1 })
	first := target()
	put(t, kv, encode(t, snapshot(2, "a", "b")))
	waitfor.That(t, "version 2", func() bool { return h.cache.Version() == 2 })
	if target() != first {
		t.Fatal("a client-only change rebuilt the deployment's upstream")
	}
	changed := snapshot(3, "a", "b")
	changed.Deployments[0].TimeoutSeconds = 5
	put(t, kv, encode(t, changed))
	waitfor.That(t, "version 3", func() bool { return h.cache.Version() == 3 })
	if target() == first {
		t.Fatal("a deployment change kept the old upstream")
	}
}

func TestSurvivesANATSRestart(t *testing.T) {
	s := natstest.StartWith(t, natstest.Options{NoConn: true})
	url := s.URL()
	js := connect(t, s)
	kv := createBucket(t, js)
	h := runCache(t, js)
	put(t, kv, encode(t, snapshot(1, "a")))
	waitfor.That(t, "version 1", func() bool { return h.cache.Version() == 1 })

	s.Restart()
	if s.Server.ClientURL() != url {
		t.Fatalf("restarted server at %s, want %s", s.Server.ClientURL(), url)
	}
	// Publish through a fresh connection, as the control plane would.
	kv2, err := connect(t, s).KeyValue(context.Background(), natsnames.PolicyBucket)
	if err != nil {
		t.Fatalf("bucket after restart: %v", err)
	}
	put(t, kv2, encode(t, snapshot(2, "after-restart")))
	waitfor.That(t, "the snapshot published after the NATS restart", func() bool { return h.cache.Version() == 2 })
}

func otherSigner(t *testing.T) *signing.Signer {
	t.Helper()
	s, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
