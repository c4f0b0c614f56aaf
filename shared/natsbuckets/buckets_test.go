package natsbuckets

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
)

func TestEnsureCreatesAndUpdatesTheBuckets(t *testing.T) {
	js := natstest.Start(t).JetStream
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ttl := range []time.Duration{0, 4 * time.Second} { // the second call updates
		if err := Ensure(ctx, js, Options{WorkerTTL: ttl}); err != nil {
			t.Fatal(err)
		}
		want := ttl
		if want == 0 {
			want = DefaultWorkerTTL
		}
		workers, err := js.Stream(ctx, natsnames.KVStream(natsnames.WorkersBucket))
		if err != nil {
			t.Fatal(err)
		}
		if got := workers.CachedInfo().Config.MaxAge; got != want {
			t.Errorf("PC_WORKERS TTL %s, want %s", got, want)
		}
	}
	limits, err := js.Stream(ctx, natsnames.KVStream(natsnames.LimitsBucket))
	if err != nil {
		t.Fatal(err)
	}
	cfg := limits.CachedInfo().Config
	if !cfg.AllowMsgTTL || cfg.Storage != jetstream.FileStorage || cfg.MaxMsgsPerSubject != 1 {
		t.Errorf("PC_LIMITS config: allow_msg_ttl %v, storage %v, history %d", cfg.AllowMsgTTL, cfg.Storage, cfg.MaxMsgsPerSubject)
	}
	policy, err := js.Stream(ctx, natsnames.KVStream(natsnames.PolicyBucket))
	if err != nil {
		t.Fatal(err)
	}
	if got := policy.CachedInfo().Config.MaxMsgsPerSubject; got != PolicyHistory {
		t.Errorf("PC_POLICY history %d, want %d", got, PolicyHistory)
	}
	checkpoints, err := js.Stream(ctx, natsnames.CheckpointsStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := checkpoints.CachedInfo().Config; !cfg.DenyDelete || !cfg.DenyPurge || cfg.Storage != jetstream.FileStorage ||
		len(cfg.Subjects) != 1 || cfg.Subjects[0] != natsnames.CheckpointsSubjects {
		t.Errorf("PC_CHECKPOINTS config: %+v", cfg)
	}
}

func TestCountersSurviveAServerRestart(t *testing.T) {
	ns := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js := ns.JetStream
	if err := Ensure(ctx, js, Options{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, natsnames.LimitsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "rpm.c.0", []byte("7")); err != nil {
		t.Fatal(err)
	}
	ns.Restart()
	_, js = ns.Connect(t) // a new connection: the first one may still be reconnecting
	kv, err = js.KeyValue(ctx, natsnames.LimitsBucket)
	if err != nil {
		t.Fatalf("PC_LIMITS after a restart: %v", err)
	}
	e, err := kv.Get(ctx, "rpm.c.0")
	if err != nil || string(e.Value()) != "7" {
		t.Fatalf("counter after a restart: %v", err)
	}
	if _, err := js.KeyValue(ctx, natsnames.WorkersBucket); err != nil {
		t.Fatalf("PC_WORKERS after a restart: %v", err)
	}
}
