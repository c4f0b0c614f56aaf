// Package pgtest gives tests a fresh, empty PostgreSQL database on a real server.
//
// The server is found the way the dev stack finds it: PORTCULLIS_TEST_DATABASE_URL,
// else PORTCULLIS_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres if it
// answers, else a throwaway cluster made with initdb and pg_ctl (see cluster.go). If
// none of that works the test fails and says what to install; it never skips.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// localURL is the server tried when no URL is configured.
const localURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

const installHint = "start it or `apt-get install postgresql`; or set PORTCULLIS_TEST_DATABASE_URL"

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
	if err := execSQL(ctx, serverURL, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := execSQL(ctx, serverURL, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	dbURL, err := withDatabase(serverURL, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return dbURL
}

func discover() (string, error) {
	for _, env := range []string{"PORTCULLIS_TEST_DATABASE_URL", "PORTCULLIS_DATABASE_URL"} {
		if u := os.Getenv(env); u != "" {
			if err := ping(u); err != nil {
				return "", fmt.Errorf("%s is set but the server does not answer (%v); %s", env, err, installHint)
			}
			return u, nil
		}
	}
	if ping(localURL) == nil {
		return localURL, nil
	}
	u, err := sharedCluster()
	if err != nil {
		return "", fmt.Errorf("nothing answers on 127.0.0.1:5432 and no throwaway cluster could be started (%v); %s", err, installHint)
	}
	return u, nil
}

func ping(dbURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return errors.Unwrap(err) // the outer error quotes the connection string
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

func execSQL(ctx context.Context, dbURL, sql string) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase points a server's URL (or keyword/value string) at database name.
func withDatabase(server, name string) (string, error) {
	if strings.HasPrefix(server, "postgres://") || strings.HasPrefix(server, "postgresql://") {
		u, err := url.Parse(server)
		if err != nil {
			return "", fmt.Errorf("parse database URL: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	return server + " dbname=" + name, nil // a later keyword wins
}
