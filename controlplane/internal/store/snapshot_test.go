package store_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// TestSnapshotOfTenThousandClientsFitsInOneMessage checks the design's payload bound:
// NATS's default max_payload is 1 MB.
func TestSnapshotOfTenThousandClientsFitsInOneMessage(t *testing.T) {
	ctx := context.Background()
	st, dbURL := storetest.Open(t)
	seed(t, st)
	const n = 10000
	rows := make([][]any, n)
	for i := range rows {
		var residency any
		if i%2 == 0 {
			residency = "eu"
		}
		// Random ids compress far worse than sequential ones, as real ids would.
		rows[i] = []any{fmt.Sprintf("svc-%s", rand.Text()), "acme", "default", residency, i%10 != 0}
	}
	conn := connect(t, dbURL)
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"clients"},
		[]string{"client_id", "tenant", "tier", "residency", "enabled"}, pgx.CopyFromRows(rows))
	if err != nil || copied != n {
		t.Fatalf("copy %d clients: %d, %v", n, copied, err)
	}

	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Clients) != n {
		t.Fatalf("snapshot has %d clients, want %d", len(snap.Clients), n)
	}
	data, err := policy.Encode(snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) >= 1<<20 {
		t.Fatalf("encoded snapshot is %d bytes, not under 1 MiB", len(data))
	}
	back, err := policy.Decode(data)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(back.Clients) != n || back.Clients[0] != snap.Clients[0] {
		t.Fatalf("decoded snapshot differs: %d clients", len(back.Clients))
	}
	t.Logf("%d clients encode to %d bytes", n, len(data))
}
