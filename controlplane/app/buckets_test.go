package app

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// bucketStatus reads a bucket's status from the server a serves.
func bucketStatus(t *testing.T, a *App, bucket string) *jetstream.KeyValueBucketStatus {
	t.Helper()
	nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a))
	if err != nil {
		t.Fatalf("connect to %s: %v", a.NATSURL(), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatalf("status of %s: %v", bucket, err)
	}
	return st.(*jetstream.KeyValueBucketStatus)
}

func TestStartEnsuresEveryBucket(t *testing.T) {
	const workerTTL = 7 * time.Second
	a, cfg := startApp(t, func(c *Config) { c.WorkerTTL = workerTTL })

	tests := []struct {
		bucket    string
		storage   jetstream.StorageType
		history   int64
		ttl       time.Duration
		msgTTL    bool          // per-message TTLs allowed
		markerTTL time.Duration // how long a TTL-expired key leaves a marker
	}{
		{bucket: natsnames.PolicyBucket, storage: jetstream.FileStorage, history: natsbuckets.PolicyHistory},
		{bucket: natsnames.LimitsBucket, storage: jetstream.FileStorage, history: 1, msgTTL: true, markerTTL: time.Minute},
		{bucket: natsnames.WorkersBucket, storage: jetstream.FileStorage, history: 1, ttl: workerTTL},
	}
	for _, tc := range tests {
		t.Run(tc.bucket, func(t *testing.T) {
			st := bucketStatus(t, a, tc.bucket)
			sc := st.StreamInfo().Config
			if sc.Storage != tc.storage || st.History() != tc.history || st.TTL() != tc.ttl || sc.Replicas != 1 {
				t.Errorf("storage %v history %d ttl %v replicas %d; want %v, %d, %v, 1",
					sc.Storage, st.History(), st.TTL(), sc.Replicas, tc.storage, tc.history, tc.ttl)
			}
			if sc.AllowMsgTTL != tc.msgTTL || sc.SubjectDeleteMarkerTTL != tc.markerTTL {
				t.Errorf("allow_msg_ttl %v, subject_delete_marker_ttl %v; want %v, %v",
					sc.AllowMsgTTL, sc.SubjectDeleteMarkerTTL, tc.msgTTL, tc.markerTTL)
			}
		})
	}

	// A restart with another worker TTL updates the existing bucket.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.WorkerTTL = 20 * time.Second
	b, err := Start(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer b.Stop(ctx)
	if got := bucketStatus(t, b, natsnames.WorkersBucket).TTL(); got != 20*time.Second {
		t.Fatalf("PC_WORKERS TTL after restarting with worker-ttl 20s: %v", got)
	}
}

// An override must reach PC_POLICY promptly: the data plane's acceptance test allows
// 2 s from the admin's PUT to a lowered limit, and the periodic republish is 30 s.
func TestLimitOverrideIsPublishedPromptly(t *testing.T) {
	a, cfg := startApp(t)
	base := "http://" + a.Addr()
	token := admintest.Admin(t, "http://"+a.Addr(), cfg.DataDir)
	for _, c := range []struct{ path, body string }{
		{"/admin/v1/tenants", `{"name":"acme"}`},
		{"/admin/v1/tiers", `{"name":"default","requests_per_minute":60,"tokens_per_hour":100000,"max_concurrent_requests":5}`},
		{"/admin/v1/clients", `{"client_id":"app","tenant":"acme","tier":"default","residency":"global"}`},
	} {
		if r := do(t, "POST", base+c.path, token, c.body); r.status != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", c.path, r.status, r.body)
		}
	}

	nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), natsnames.PolicyBucket)
	if err != nil {
		t.Fatal(err)
	}
	published := func(check func(*policy.Snapshot) bool) func() bool {
		return func() bool {
			e, err := kv.Get(context.Background(), natsnames.PolicySnapshotKey)
			if err != nil {
				return false
			}
			s, err := decodePublished(e.Value())
			return err == nil && check(s)
		}
	}
	waitfor.That(t, "the client to be published", published(func(s *policy.Snapshot) bool { return len(s.Clients) == 1 }))

	steps := []struct {
		name, method, body string
		check              func(*policy.Snapshot) bool
	}{
		{"set", "PUT", `{"requests_per_minute":1,"ttl_seconds":600,"reason":"throttle"}`, func(s *policy.Snapshot) bool {
			return len(s.LimitOverrides) == 1 && s.LimitOverrides[0].ClientID == "app" && s.LimitOverrides[0].RequestsPerMinute == 1
		}},
		{"clear", "DELETE", "", func(s *policy.Snapshot) bool { return len(s.LimitOverrides) == 0 }},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			start := time.Now()
			if r := do(t, s.method, base+"/admin/v1/clients/app/limit-override", token, s.body); r.status >= 300 {
				t.Fatalf("%s override: %d %s", s.method, r.status, r.body)
			}
			waitfor.That(t, "the change to be published", published(s.check))
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("the change took %v to reach %s, want under 2s", took, natsnames.PolicyBucket)
			}
		})
	}
}
