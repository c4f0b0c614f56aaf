package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/portcullis-gw/portcullis/controlplane/pglocal"
)

// The server FindPostgres tries when no URL is given, and the database it uses there.
const (
	LocalPostgresURL = pglocal.DefaultURL
	DevDatabase      = "portcullis_dev"
)

// clusterPorts are the ports an own cluster may take, the first free one.
const clusterPortFirst, clusterPortLast = 54329, 54399

// PostgresOptions say where FindPostgres looks for a server.
type PostgresOptions struct {
	// URL, when set, is used as it is (PORTCULLIS_DATABASE_URL).
	URL string
	// ClusterDir is where an own cluster lives when no server answers on
	// 127.0.0.1:5432 (.data/pg); it persists between runs.
	ClusterDir string
	// LogFile receives the server's output; "" is postgres.log next to ClusterDir.
	LogFile string
	// Say reports each step, one line each.
	Say func(string)
}

// Postgres is the server the dev stack uses. Stop stops it if FindPostgres started it.
type Postgres struct {
	// URL is the database URL for the control plane.
	URL string

	cluster *pglocal.Cluster // set when this process started the cluster
	lock    *os.File         // held while it runs: no other dev stack may touch the cluster
}

// FindPostgres finds a PostgreSQL database for the dev stack, in this order:
//  1. o.URL, if set;
//  2. a server answering on 127.0.0.1:5432 as user postgres without a password,
//     database portcullis_dev, created if missing;
//  3. a cluster of its own in o.ClusterDir (initdb, then pg_ctl) on a free port
//     between 54329 and 54399, created the first time;
//  4. otherwise an error that says which package to install.
func FindPostgres(ctx context.Context, o PostgresOptions) (*Postgres, error) {
	say := o.Say
	if say == nil {
		say = func(string) {}
	}
	if o.URL != "" {
		say("PostgreSQL: PORTCULLIS_DATABASE_URL")
		return &Postgres{URL: o.URL}, nil
	}
	if err := pglocal.Ping(ctx, LocalPostgresURL); err == nil {
		created, err := pglocal.EnsureDatabase(ctx, LocalPostgresURL, DevDatabase)
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL on 127.0.0.1:5432: %w; set PORTCULLIS_DATABASE_URL", err)
		}
		if created {
			say("created database " + DevDatabase)
		}
		u, err := pglocal.WithDatabase(LocalPostgresURL, DevDatabase)
		if err != nil {
			return nil, err
		}
		say("PostgreSQL: 127.0.0.1:5432, database " + DevDatabase)
		return &Postgres{URL: u}, nil
	}
	return ownCluster(ctx, o, say)
}

// ownCluster starts the cluster in o.ClusterDir, creating it first when it has none.
// A server left running there (by a run that was killed) is stopped first, so that
// this run owns the server it stops.
func ownCluster(ctx context.Context, o PostgresOptions, say func(string)) (*Postgres, error) {
	const hint = "start a server on 127.0.0.1:5432, or set PORTCULLIS_DATABASE_URL"
	if o.ClusterDir == "" {
		return nil, errors.New("no PostgreSQL answers on 127.0.0.1:5432 and no cluster directory is set; " + pglocal.InstallHint + ", " + hint)
	}
	bin, err := pglocal.FindBinaries()
	if err != nil {
		return nil, fmt.Errorf("no PostgreSQL answers on 127.0.0.1:5432 and %v; or %s", err, hint)
	}
	lock, err := lockCluster(o.ClusterDir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	c := &pglocal.Cluster{Dir: o.ClusterDir, LogFile: o.LogFile, Bin: bin}
	if !c.Initialized() {
		say("creating a PostgreSQL cluster in " + o.ClusterDir)
	}
	if _, err := c.Init(ctx); err != nil {
		return nil, fmt.Errorf("a dev PostgreSQL in %s: %w; or %s", o.ClusterDir, err, hint)
	}
	if port, err := c.Running(ctx); err != nil || port != 0 {
		say("stopping a PostgreSQL left running in " + o.ClusterDir)
		if err := c.Stop(ctx); err != nil {
			return nil, err
		}
	}
	port, err := pglocal.FreePort(clusterPortFirst, clusterPortLast)
	if err != nil {
		return nil, fmt.Errorf("a dev PostgreSQL: %w", err)
	}
	if err := c.Start(ctx, port); err != nil {
		return nil, err
	}
	say(fmt.Sprintf("PostgreSQL: own cluster in %s on 127.0.0.1:%d", o.ClusterDir, port))
	ok = true
	return &Postgres{URL: pglocal.URL(port), cluster: c, lock: lock}, nil
}

// lockCluster takes the lock of the cluster in dir (a file next to it), without
// waiting: a cluster another dev stack runs is refused, not stopped under it.
func lockCluster(dir string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("a dev PostgreSQL in %s: %w", dir, err)
	}
	f, err := os.OpenFile(dir+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("a dev PostgreSQL in %s: lock: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("a dev PostgreSQL in %s: another dev stack is using it (%s is locked); stop that one first", dir, dir+".lock")
	}
	return f, nil
}

// Stop stops the cluster FindPostgres started, fast, and at once if that does not do
// within 5 s; it does nothing for a server it found running. It reports what it could
// not stop.
func (p *Postgres) Stop() error {
	if p == nil || p.cluster == nil {
		return nil
	}
	defer p.lock.Close() // releases the lock once the cluster is down
	return p.cluster.Stop(context.Background())
}
