package auditarchive_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// appendEvents archives n more events of region straight into the store.
func appendEvents(t *testing.T, st *store.Store, region string, n int) {
	t.Helper()
	var batch []store.AuditEvent
	for range n {
		e := audit.Event{TS: time.Now().UTC(), RequestID: fmt.Sprintf("%s-%d", region, time.Now().UnixNano()), Region: region,
			ClientID: "c", Operation: "chat", Model: "gpt-4o", Status: 200}
		b, err := chain.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, store.AuditEvent{Event: e, JSON: b})
	}
	if _, err := st.AppendAudit(context.Background(), region, batch); err != nil {
		t.Fatal(err)
	}
}

// chainHead is region's chain head, as an export reads it.
func chainHead(t *testing.T, st *store.Store, region string) store.AuditHead {
	t.Helper()
	h, err := st.ExportAudit(context.Background(), store.AuditQuery{Region: region, From: time.Now().Add(-time.Hour), To: time.Now()},
		func(store.AuditRow) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// published returns every checkpoint on PC_CHECKPOINTS, decoded, by subject.
func published(t *testing.T, js jetstream.JetStream) map[string][]checkpoint.Checkpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, natsnames.CheckpointsStream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]checkpoint.Checkpoint{}
	for range info.NumPending {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		c, err := checkpoint.Decode(m.Data())
		if err != nil {
			t.Fatalf("a message on %s: %v", m.Subject(), err)
		}
		out[m.Subject()] = append(out[m.Subject()], c)
	}
	return out
}

// TestCheckpointerSignsKeepsAndPublishes: two replicas' checkpointers sign each
// region's head once, keep it and publish it once on checkpoints.audit.<region>;
// the checkpoints verify with the public key and match the archive's heads; an
// unchanged head is not signed again, a moved one is.
func TestCheckpointerSignsKeepsAndPublishes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := natsbuckets.Ensure(ctx, e.js, natsbuckets.Options{}); err != nil {
		t.Fatal(err)
	}
	s, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := signing.ParsePublicKeys(s.PublicPEM())
	if err != nil {
		t.Fatal(err)
	}
	replicas := []*auditarchive.Checkpointer{
		auditarchive.NewCheckpointer(auditarchive.CheckpointerOptions{Store: e.st, JetStream: e.js, Signer: s}),
		auditarchive.NewCheckpointer(auditarchive.CheckpointerOptions{Store: e.st, JetStream: e.js, Signer: s}),
	}
	appendEvents(t, e.st, "eu", 3)
	appendEvents(t, e.st, "us", 2)
	for _, c := range replicas {
		if err := c.Round(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := published(t, e.js)
	if len(got) != 2 || len(got["checkpoints.audit.eu"]) != 1 || len(got["checkpoints.audit.us"]) != 1 {
		t.Fatalf("published %v, want one checkpoint of each region", got)
	}
	for _, region := range []string{"eu", "us"} {
		c := got[natsnames.AuditCheckpointSubject(region)][0]
		head := chainHead(t, e.st, region)
		if err := c.Verify(keys); err != nil {
			t.Fatalf("%s: the published checkpoint does not verify: %v", region, err)
		}
		if c.Region != region || c.Seq != head.Seq || c.ChainHash != head.Hash || c.KeyID != s.KeyID() {
			t.Fatalf("%s: checkpoint %+v, head %+v", region, c, head)
		}
		kept, err := e.st.AuditCheckpoints(ctx, region, 10)
		if err != nil || len(kept) != 1 || kept[0].Verify(keys) != nil || !kept[0].At.Equal(c.At) {
			t.Fatalf("%s: kept %+v, %v", region, kept, err)
		}
	}

	// Nothing moved: nothing new. Then eu moves.
	if err := replicas[0].Round(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(published(t, e.js)["checkpoints.audit.eu"]); n != 1 {
		t.Fatalf("an unchanged head was signed again: %d eu checkpoints", n)
	}
	appendEvents(t, e.st, "eu", 2)
	if err := replicas[1].Round(ctx); err != nil {
		t.Fatal(err)
	}
	kept, err := e.st.AuditCheckpoints(ctx, "eu", 10)
	if err != nil || len(kept) != 2 || kept[0].Seq != 5 || kept[1].Seq != 3 {
		t.Fatalf("eu's checkpoints, newest first: %+v, %v", kept, err)
	}
	if eu := published(t, e.js)["checkpoints.audit.eu"]; len(eu) != 2 || eu[1].Seq != 5 || eu[1].Verify(keys) != nil {
		t.Fatalf("eu on NATS: %+v", eu)
	}
}

// TestCheckpointsUnpublishedArePublishedLater: a checkpoint NATS refused is kept,
// and a later round publishes it.
func TestCheckpointsUnpublishedArePublishedLater(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	noStream := natstest.Start(t).JetStream // PC_CHECKPOINTS missing: every publish fails
	appendEvents(t, e.st, "eu", 1)
	down := auditarchive.NewCheckpointer(auditarchive.CheckpointerOptions{Store: e.st, JetStream: noStream, Signer: s})
	if err := down.Round(ctx); err == nil {
		t.Fatal("a round whose publish failed reported no error")
	}
	if kept, err := e.st.AuditCheckpoints(ctx, "eu", 10); err != nil || len(kept) != 1 {
		t.Fatalf("the checkpoint was not kept: %+v %v", kept, err)
	}
	if err := natsbuckets.Ensure(ctx, e.js, natsbuckets.Options{}); err != nil {
		t.Fatal(err)
	}
	up := auditarchive.NewCheckpointer(auditarchive.CheckpointerOptions{Store: e.st, JetStream: e.js, Signer: s})
	if err := up.Round(ctx); err != nil {
		t.Fatal(err)
	}
	if eu := published(t, e.js)["checkpoints.audit.eu"]; len(eu) != 1 || eu[0].Seq != 1 {
		t.Fatalf("published later: %+v", eu)
	}
	if pending, err := e.st.UnpublishedAuditCheckpoints(ctx, 10); err != nil || len(pending) != 0 {
		t.Fatalf("still unpublished: %+v %v", pending, err)
	}
}

// TestCheckpointerRunsAtItsInterval: Run signs a head that moves while it runs, and
// returns when its context ends.
func TestCheckpointerRunsAtItsInterval(t *testing.T) {
	e := newEnv(t)
	if err := natsbuckets.Ensure(context.Background(), e.js, natsbuckets.Options{}); err != nil {
		t.Fatal(err)
	}
	s, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c := auditarchive.NewCheckpointer(auditarchive.CheckpointerOptions{Store: e.st, JetStream: e.js, Signer: s,
		Interval: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(e.logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	appendEvents(t, e.st, "eu", 4)
	waitfor.That(t, "a checkpoint of eu at seq 4", func() bool {
		kept, err := e.st.AuditCheckpoints(context.Background(), "eu", 1)
		return err == nil && len(kept) == 1 && kept[0].Seq == 4
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}
