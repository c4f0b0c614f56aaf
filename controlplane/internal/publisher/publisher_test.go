package publisher

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// versionSource serves a minimal valid snapshot at whatever version it holds.
type versionSource struct{ v atomic.Int64 }

var _ SnapshotSource = (*versionSource)(nil)

func sourceAt(v int64) *versionSource {
	s := &versionSource{}
	s.v.Store(v)
	return s
}

func (s *versionSource) Snapshot(context.Context) (*policy.Snapshot, error) {
	return &policy.Snapshot{
		SchemaVersion: policy.SchemaVersion,
		Version:       s.v.Load(),
		GeneratedAt:   time.Now().UTC(),
		Tenants:       []policy.Tenant{{Name: "demo"}},
	}, nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// policyBucket starts an embedded nats-server and returns the PC_POLICY bucket.
func policyBucket(t *testing.T) jetstream.KeyValue {
	t.Helper()
	js := natstest.Start(t).JetStream
	kv, err := js.CreateOrUpdateKeyValue(context.Background(), jetstream.KeyValueConfig{
		Bucket: natsnames.PolicyBucket, History: 5, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func bucketVersion(t *testing.T, kv jetstream.KeyValue) int64 {
	t.Helper()
	e, err := kv.Get(context.Background(), natsnames.PolicySnapshotKey)
	if err != nil {
		t.Fatalf("get snapshot: %v", err)
	}
	s, err := policy.DecodeSigned(e.Value(), testKeys)
	if err != nil {
		t.Fatalf("decode snapshot: %v", err)
	}
	return s.Version
}

func TestPublishCompareAndSwap(t *testing.T) {
	tests := []struct {
		name      string
		existing  []byte // written to the key before publishing; nil = key absent
		ours      int64
		wantWrote bool
		wantAfter int64
	}{
		{"creates when absent", nil, 3, true, 3},
		{"replaces older", mustSeal(t, 2, testSigner), 3, true, 3},
		{"skips equal", mustSeal(t, 3, testSigner), 3, false, 3},
		{"never replaces newer", mustSeal(t, 9, testSigner), 3, false, 9},
		// A value it did not sign does not hold it back, whatever version it claims.
		{"overwrites an unsigned newer snapshot", mustEncode(t, 1<<62), 3, true, 3},
		{"overwrites a newer snapshot signed by another key", mustSeal(t, 1<<62, otherSigner), 3, true, 3},
		{"overwrites garbage", []byte("not a snapshot"), 3, true, 3},
		{"overwrites gzip of non-json", gzipOf(t, "}{"), 3, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := policyBucket(t)
			if tt.existing != nil {
				if _, err := kv.Put(context.Background(), natsnames.PolicySnapshotKey, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			p := New(sourceAt(tt.ours), kv, Options{Log: quietLog(), Signer: testSigner})
			res, err := p.Publish(context.Background())
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if res.Wrote != tt.wantWrote || res.Current != tt.wantAfter {
				t.Fatalf("result %+v, want wrote=%v current=%d", res, tt.wantWrote, tt.wantAfter)
			}
			if got := bucketVersion(t, kv); got != tt.wantAfter {
				t.Fatalf("bucket version %d, want %d", got, tt.wantAfter)
			}
			if got := p.Version(); got != tt.wantAfter {
				t.Fatalf("Version() = %d, want %d", got, tt.wantAfter)
			}
		})
	}
}

func TestInvalidSnapshotIsNotPublished(t *testing.T) {
	kv := policyBucket(t)
	p := New(sourceAt(0), kv, Options{Log: quietLog(), Signer: testSigner}) // version 0 fails Validate
	if _, err := p.Publish(context.Background()); err == nil {
		t.Fatal("Publish accepted an invalid snapshot")
	}
	if _, err := kv.Get(context.Background(), natsnames.PolicySnapshotKey); err != jetstream.ErrKeyNotFound {
		t.Fatalf("bucket written despite invalid snapshot (get err %v)", err)
	}
}

// TestRacingPublishersNeverGoBackwards races a publisher whose source climbs through
// versions against one stuck at a middle version, and watches every value the key
// takes: the versions seen must only ever increase.
func TestRacingPublishersNeverGoBackwards(t *testing.T) {
	kv := policyBucket(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	w, err := kv.Watch(ctx, natsnames.PolicySnapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	const top, stuck = 40, 20
	climbing := sourceAt(1)
	a := New(climbing, kv, Options{Log: quietLog(), Signer: testSigner})
	b := New(sourceAt(stuck), kv, Options{Log: quietLog(), Signer: testSigner})

	var wg sync.WaitGroup
	errs := make(chan error, 2*top)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for v := int64(1); v <= top; v++ {
			climbing.v.Store(v)
			if _, err := a.Publish(ctx); err != nil {
				errs <- err
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range top {
			if _, err := b.Publish(ctx); err != nil {
				errs <- err
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("publish: %v", err)
	}

	var seen []int64
	timeout := time.After(15 * time.Second)
	for len(seen) == 0 || seen[len(seen)-1] != top {
		select {
		case e := <-w.Updates():
			if e == nil {
				continue // end of initial values
			}
			s, err := policy.DecodeSigned(e.Value(), testKeys)
			if err != nil {
				t.Fatalf("revision %d undecodable: %v", e.Revision(), err)
			}
			if n := len(seen); n > 0 && s.Version <= seen[n-1] {
				t.Fatalf("version went from %d to %d (sequence %v)", seen[n-1], s.Version, seen)
			}
			seen = append(seen, s.Version)
		case <-timeout:
			t.Fatalf("never saw version %d; saw %v", top, seen)
		}
	}
	if a.Version() != top {
		t.Fatalf("climbing publisher knows version %d, want %d", a.Version(), top)
	}
	if v := b.Version(); v < stuck || v > top {
		t.Fatalf("stuck publisher knows version %d, want %d..%d", v, stuck, top)
	}
}

func TestRunPublishesAtStartOnNotifyAndPeriodically(t *testing.T) {
	kv := policyBucket(t)
	src := sourceAt(1)
	p := New(src, kv, Options{Interval: 200 * time.Millisecond, Log: quietLog(), Signer: testSigner})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	waitfor.That(t, "publish at start", func() bool { return p.Version() == 1 })

	src.v.Store(2)
	for range 5 {
		p.Notify() // coalesces; never blocks
	}
	waitfor.That(t, "publish after Notify", func() bool { return p.Version() == 2 })
	if got := bucketVersion(t, kv); got != 2 {
		t.Fatalf("bucket version %d, want 2", got)
	}

	// A lost update heals: delete the key and wait for the periodic publish.
	if err := kv.Delete(context.Background(), natsnames.PolicySnapshotKey); err != nil {
		t.Fatal(err)
	}
	waitfor.That(t, "periodic republish after the key was deleted", func() bool {
		e, err := kv.Get(context.Background(), natsnames.PolicySnapshotKey)
		return err == nil && len(e.Value()) > 0
	})
	if got := bucketVersion(t, kv); got != 2 {
		t.Fatalf("bucket version %d after heal, want 2", got)
	}
}

// testSigner signs the publishers' snapshots; otherSigner is a key they do not trust.
var testSigner, otherSigner = mustSigner(), mustSigner()

// testKeys verifies testSigner's seals.
var testKeys = func() *signing.Verifier {
	v, err := signing.ParsePublicKeys(testSigner.PublicPEM())
	if err != nil {
		panic(err)
	}
	return v
}()

func mustSigner() *signing.Signer {
	s, err := signing.Generate()
	if err != nil {
		panic(err)
	}
	return s
}

// mustSeal is the snapshot of version v sealed by signer.
func mustSeal(t *testing.T, v int64, signer *signing.Signer) []byte {
	t.Helper()
	return policy.Seal(mustEncode(t, v), signer)
}

func mustEncode(t *testing.T, v int64) []byte {
	t.Helper()
	s, _ := sourceAt(v).Snapshot(context.Background())
	b, err := policy.Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
