package store_test

import (
	"context"
	"io/fs"
	"sync"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
	"github.com/portcullis-gw/portcullis/migrations"
)

func TestMigrateIsIdempotentAndSerialised(t *testing.T) {
	ctx := context.Background()
	dbURL := pgtest.Database(t)
	st, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer st.Close()

	// Replicas starting together: the advisory lock lets exactly one apply each file.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() { errs <- st.Migrate(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate again: %v", err)
	}

	files, _ := fs.Glob(migrations.FS, "*.sql")
	conn := connect(t, dbURL)
	var applied, states int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM schema_migrations), (SELECT count(*) FROM policy_state)`).Scan(&applied, &states); err != nil {
		t.Fatal(err)
	}
	if applied != len(files) || len(files) == 0 {
		t.Errorf("schema_migrations has %d rows, want one per file (%d)", applied, len(files))
	}
	if states != 1 {
		t.Errorf("policy_state has %d rows, want 1", states)
	}
	if v := version(t, st); v != 1 {
		t.Errorf("policy version after migrating = %d, want 1", v)
	}
}
