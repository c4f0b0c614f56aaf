package pgtest

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/pglocal"
)

func TestDatabaseIsFreshAndDropped(t *testing.T) {
	var name string
	t.Run("fresh", func(t *testing.T) {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, Database(t))
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer conn.Close(ctx)
		var tables int
		if err := conn.QueryRow(ctx, `SELECT current_database(), (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&name, &tables); err != nil {
			t.Fatalf("query: %v", err)
		}
		if !strings.HasPrefix(name, "pc_test_") || tables != 0 {
			t.Fatalf("database %q with %d tables, want a fresh pc_test_* one", name, tables)
		}
	})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatalf("query: %v", err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test finished", name)
	}
}

// TestThrowawayCluster exercises the last resort of discovery, which a machine with a
// running server never reaches otherwise: initdb, start, reuse, stop.
func TestThrowawayCluster(t *testing.T) {
	root, err := os.MkdirTemp("", "pgtest-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })

	ctx := context.Background()
	first, err := startCluster(ctx, throwawayCluster(root))
	if err != nil {
		t.Fatalf("start throwaway cluster (needs initdb and pg_ctl: %s): %v", pglocal.InstallHint, err)
	}
	t.Cleanup(func() {
		if err := throwawayCluster(root).Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	if err := pglocal.Ping(ctx, first); err != nil {
		t.Fatalf("cluster at %s does not answer: %v", first, err)
	}
	again, err := startCluster(ctx, throwawayCluster(root))
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	if again != first {
		t.Fatalf("second start gave %s, want the running cluster %s", again, first)
	}
}
