// Package pglocal finds, starts and stops PostgreSQL on this machine, for the tests
// (controlplane/pgtest) and the dev stack (tests/stack), which each decide in their own
// order where to look; this package does the mechanics they share: finding the server
// binaries, a cluster of its own in a directory (initdb, pg_ctl start and stop) on a
// free loopback port, pinging a server and creating a database.
//
// Its functions take no testing.TB and never panic; their errors say what to install.
// A cluster it starts listens on 127.0.0.1 only, with no Unix socket, and trusts every
// local connection: it is for development and tests, never for production data. Run
// as root, the server binaries run as the postgres OS user (initdb and postgres refuse
// root), which then owns the cluster's directory.
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the server a developer's machine usually runs: user postgres on
// 127.0.0.1:5432, trusted, database postgres.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// InstallHint says how to get the PostgreSQL server binaries; callers add their own
// alternatives (a URL variable to set).
const InstallHint = "install the 'postgresql' package (e.g. apt-get install postgresql)"

// pingTimeout bounds Ping; sqlTimeout bounds one database statement's round.
const (
	pingTimeout = 3 * time.Second
	sqlTimeout  = 30 * time.Second
)

// URL is the URL of database postgres as user postgres on 127.0.0.1:port, the way a
// cluster of this package is reached.
func URL(port int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// Ping connects to dbURL and pings the server, within 3 seconds.
func Ping(ctx context.Context, dbURL string) error {
	return withConn(ctx, dbURL, pingTimeout, func(ctx context.Context, conn *pgx.Conn) error {
		return conn.Ping(ctx)
	})
}

// EnsureDatabase creates the database name on the server at serverURL unless it
// exists, within 30 seconds, and reports whether it created it.
func EnsureDatabase(ctx context.Context, serverURL, name string) (created bool, err error) {
	err = withConn(ctx, serverURL, sqlTimeout, func(ctx context.Context, conn *pgx.Conn) error {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
			return fmt.Errorf("look for database %s: %w", name, err)
		}
		if exists {
			return nil
		}
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return fmt.Errorf("create database %s: %w", name, err)
		}
		created = true
		return nil
	})
	return created, err
}

// DropDatabase drops the database name on the server at serverURL if it exists,
// closing its connections (WITH (FORCE)), within 30 seconds.
func DropDatabase(ctx context.Context, serverURL, name string) error {
	return withConn(ctx, serverURL, sqlTimeout, func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	})
}

// withConn runs f on one connection to dbURL, all within timeout. A failed connect's
// error is the cause pgx wraps, without pgx's outer message, which quotes the
// connection string.
func withConn(ctx context.Context, dbURL string, timeout time.Duration, f func(context.Context, *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			return inner
		}
		return err
	}
	defer conn.Close(ctx)
	return f(ctx, conn)
}

// WithDatabase points a server's URL, or keyword/value connection string, at the
// database name.
func WithDatabase(serverURL, name string) (string, error) {
	if strings.HasPrefix(serverURL, "postgres://") || strings.HasPrefix(serverURL, "postgresql://") {
		u, err := url.Parse(serverURL)
		if err != nil {
			return "", errors.New("parse database URL: not a valid URL") // the error would quote it
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	return serverURL + " dbname=" + name, nil // a later keyword wins
}

// FreePort returns the first port from first to last on which nothing listens on
// 127.0.0.1, or, when first is 0, a port the kernel picks. The port was free a moment
// ago; a server started on it may still lose a race for it.
func FreePort(first, last int) (int, error) {
	if first == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	for p := first; p <= last; p++ {
		if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)); err == nil {
			l.Close()
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port on 127.0.0.1 in %d-%d", first, last)
}
