package audit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

func TestStreamConfig(t *testing.T) {
	tests := []struct {
		name string
		o    StreamOptions
		want func(t *testing.T, c jetstream.StreamConfig)
	}{
		{"defaults", StreamOptions{Region: "eu"}, func(t *testing.T, c jetstream.StreamConfig) {
			if c.Name != "PC_AUDIT_EU" || len(c.Subjects) != 1 || c.Subjects[0] != "audit.eu.>" {
				t.Errorf("name %q subjects %v", c.Name, c.Subjects)
			}
			if c.Storage != jetstream.FileStorage || !c.DenyDelete || !c.DenyPurge {
				t.Errorf("storage %v deny delete %v deny purge %v", c.Storage, c.DenyDelete, c.DenyPurge)
			}
			if c.Duplicates != 2*time.Minute || c.MaxAge != DefaultStreamMaxAge || c.Replicas != 1 {
				t.Errorf("duplicates %v max age %v replicas %d", c.Duplicates, c.MaxAge, c.Replicas)
			}
			if c.Placement != nil {
				t.Errorf("placement %+v without a tag", c.Placement)
			}
		}},
		{"placement, replicas and age", StreamOptions{Region: "us", PlacementTag: "region:us", Replicas: 3, MaxAge: time.Hour},
			func(t *testing.T, c jetstream.StreamConfig) {
				if c.Placement == nil || len(c.Placement.Tags) != 1 || c.Placement.Tags[0] != "region:us" {
					t.Errorf("placement %+v", c.Placement)
				}
				if c.Replicas != 3 || c.MaxAge != time.Hour || c.Subjects[0] != "audit.us.>" {
					t.Errorf("replicas %d max age %v subjects %v", c.Replicas, c.MaxAge, c.Subjects)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.want(t, StreamConfig(tc.o)) })
	}
}

func TestEnsureStream(t *testing.T) {
	e := newNATS(t) // creates PC_AUDIT_EU
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Again with the same settings: nothing to do.
	if err := EnsureStream(ctx, e.js, StreamOptions{Region: testRegion}); err != nil {
		t.Fatal(err)
	}
	// Again, with a new max age: a data plane never changes the stream (its NATS
	// identity may not), and says so.
	if err := EnsureStream(ctx, e.js, StreamOptions{Region: testRegion, MaxAge: 48 * time.Hour}); !errors.Is(err, ErrStreamSettingsDiffer) {
		t.Fatalf("EnsureStream with other settings: %v, want ErrStreamSettingsDiffer", err)
	}
	st, err := e.js.Stream(ctx, natsnames.AuditStream(testRegion))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxAge; got != DefaultStreamMaxAge {
		t.Errorf("max age after EnsureStream with other settings = %v, want it unchanged", got)
	}
	// Every client's subject of the region lands in it.
	ack, err := e.js.Publish(ctx, natsnames.AuditSubject(testRegion, "some.client"), []byte("{}"))
	if err != nil || ack.Stream != natsnames.AuditStream(testRegion) {
		t.Fatalf("publish = %+v, %v", ack, err)
	}
	// The stream refuses deletes.
	if err := st.DeleteMsg(ctx, ack.Sequence); err == nil {
		t.Error("a message was deleted from the audit stream")
	}
	// The placement tag reaches the server. (A single server ignores placement; in a
	// cluster, a tag no server has makes creation fail, which is why "" means none.)
	if err := EnsureStream(ctx, e.js, StreamOptions{Region: "us", PlacementTag: "region:us"}); err != nil {
		t.Fatal(err)
	}
	us, err := e.js.Stream(ctx, natsnames.AuditStream("us"))
	if err != nil {
		t.Fatal(err)
	}
	if p := us.CachedInfo().Config.Placement; p == nil || len(p.Tags) != 1 || p.Tags[0] != "region:us" {
		t.Errorf("placement of the us stream = %+v", p)
	}
	if err := EnsureStream(ctx, e.js, StreamOptions{}); err == nil {
		t.Error("a stream without a region was created")
	}
}
