package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/export"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestAuditEventsAreArchivedAndExported runs the whole path inside one control plane:
// a region stream as data planes create it, events published on it, the ingest, and
// the export endpoint.
func TestAuditEventsAreArchivedAndExported(t *testing.T) {
	a, cfg := startApp(t, func(c *Config) { c.AuditIngest = true })
	token := admintest.Admin(t, "http://"+a.Addr(), cfg.DataDir)
	nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, region := range []string{"eu", "us"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: natsnames.AuditStream(region),
			Subjects: []string{"audit." + region + ".>"}, Storage: jetstream.FileStorage, DenyDelete: true, DenyPurge: true}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 50
	now := time.Now().UTC()
	for i := range n {
		for _, region := range []string{"eu", "us"} {
			e := audit.Event{TS: now, RequestID: fmt.Sprintf("%s-%d", region, i), Region: region, ClientID: "c1", Status: 200}
			b, _ := audit.Encode(e)
			// Twice, as a redelivering data plane would; the stream keeps one (same msg id).
			for range 2 {
				if _, err := js.Publish(ctx, natsnames.AuditSubject(region, "c1"), b, jetstream.WithMsgID(e.RequestID)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	url := fmt.Sprintf("http://%s/admin/v1/audit/export?region=eu&from=%s&to=%s", a.Addr(),
		now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339))
	var sum export.Summary
	waitfor.That(t, "the eu events in the export", func() bool {
		r := do(t, http.MethodGet, url, token, "")
		if r.status != http.StatusOK {
			t.Fatalf("export: %d %s", r.status, r.body)
		}
		if sum, err = export.Verify(strings.NewReader(r.body)); err != nil {
			t.Fatalf("export does not verify: %v", err)
		}
		return sum.Head.Rows == n
	})
	if sum.Head.Region != "eu" || sum.Head.Seq != n || !sum.ReachesHead {
		t.Fatalf("summary %+v", sum)
	}
	if metrics := scrape(t, a); !strings.Contains(metrics, `portcullis_controlplane_audit_events_total{region="eu",result="stored"} 50`) {
		t.Fatalf("metrics lack the archived events:\n%s", metrics)
	}
}
