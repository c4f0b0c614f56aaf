package pgtest

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		name, server, want string
	}{
		{"url", "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable", "postgres://u:p@127.0.0.1:5432/pc_test_x?sslmode=disable"},
		{"url without path", "postgresql://127.0.0.1", "postgresql://127.0.0.1/pc_test_x"},
		{"keyword/value", "host=127.0.0.1 dbname=postgres", "host=127.0.0.1 dbname=postgres dbname=pc_test_x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := withDatabase(tc.server, "pc_test_x")
			if err != nil || got != tc.want {
				t.Fatalf("withDatabase(%q) = %q, %v; want %q", tc.server, got, err, tc.want)
			}
		})
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

	first, err := startCluster(root)
	if err != nil {
		t.Fatalf("start throwaway cluster (needs initdb and pg_ctl: `apt-get install postgresql`): %v", err)
	}
	t.Cleanup(func() {
		if err := stopCluster(root); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	if err := waitPing(first); err != nil {
		t.Fatalf("cluster at %s does not answer: %v", first, err)
	}
	again, err := startCluster(root)
	if err != nil {
		t.Fatalf("second start: %v", err)
	}
	if again != first {
		t.Fatalf("second start gave %s, want the running cluster %s", again, first)
	}
}

func waitPing(dbURL string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ping(dbURL)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
