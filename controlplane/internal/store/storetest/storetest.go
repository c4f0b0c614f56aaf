// Package storetest opens a migrated store on a fresh Postgres database for tests.
package storetest

import (
	"context"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
)

// Open returns a migrated store on a fresh database (see pgtest.Database), closed when
// the test ends, and that database's URL.
func Open(t testing.TB) (*store.Store, string) {
	t.Helper()
	dbURL := pgtest.Database(t)
	st, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(st.Close)
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st, dbURL
}
