package audit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

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
