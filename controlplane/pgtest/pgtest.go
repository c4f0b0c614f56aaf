// Package pgtest gives tests a fresh, empty PostgreSQL database on a real server.
//
// The server is found the way the dev stack finds it: PORTCULLIS_TEST_DATABASE_URL,
// else PORTCULLIS_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres if it
// answers, else a throwaway cluster made with initdb and pg_ctl (see cluster.go). If
// none of that works the test fails and says what to install; it never skips. The
// mechanics are package pglocal's, which the dev stack uses too; this package adds the
// testing.TB layer.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/pglocal"
)

const installHint = "start it or " + pglocal.InstallHint + "; or set PORTCULLIS_TEST_DATABASE_URL"

// The server is discovered once per test process and shared by every Database call.
var (
	discoverOnce sync.Once
	serverURL    string
	serverErr    error
)

// Database creates a database named pc_test_<random> and returns its URL. The database
// is dropped (WITH (FORCE)) when t and its subtests finish.
func Database(t testing.TB) string {
	t.Helper()
	discoverOnce.Do(func() { serverURL, serverErr = discover() })
	if serverErr != nil {
		t.Fatalf("no PostgreSQL reachable: %v", serverErr)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "pc_test_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if created, err := pglocal.EnsureDatabase(ctx, serverURL, name); err != nil || !created {
		t.Fatalf("pgtest: create database %s: created %t, %v", name, created, err)
	}
	t.Cleanup(func() {
		if err := pglocal.DropDatabase(context.Background(), serverURL, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	dbURL, err := pglocal.WithDatabase(serverURL, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dbURL
}

// discover returns the URL of the server the tests use, in the order of the package
// comment.
func discover() (string, error) {
	ctx := context.Background()
	for _, env := range []string{"PORTCULLIS_TEST_DATABASE_URL", "PORTCULLIS_DATABASE_URL"} {
		if u := os.Getenv(env); u != "" {
			if err := pglocal.Ping(ctx, u); err != nil {
				return "", fmt.Errorf("%s is set but the server does not answer (%v); %s", env, err, installHint)
			}
			return u, nil
		}
	}
	if pglocal.Ping(ctx, pglocal.DefaultURL) == nil {
		return pglocal.DefaultURL, nil
	}
	u, err := sharedCluster(ctx)
	if err != nil {
		return "", fmt.Errorf("nothing answers on 127.0.0.1:5432 and no throwaway cluster could be started (%v); %s", err, installHint)
	}
	return u, nil
}
