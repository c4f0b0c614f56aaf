package stack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// The server FindPostgres tries when no URL is given, and the database it uses there.
const (
	LocalPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
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
	// LogFile receives initdb's and the server's output.
	LogFile string
	// Say reports each step, one line each.
	Say func(string)
}

// Postgres is the server the dev stack uses. Stop stops it if FindPostgres started it.
type Postgres struct {
	// URL is the database URL for the control plane.
	URL string

	bin, clusterDir string // set when this process started the cluster
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
	if err := ping(ctx, LocalPostgresURL); err == nil {
		created, err := ensureDatabase(ctx, LocalPostgresURL, DevDatabase)
		if err != nil {
			return nil, fmt.Errorf("PostgreSQL on 127.0.0.1:5432: %w; set PORTCULLIS_DATABASE_URL", err)
		}
		if created {
			say("created database " + DevDatabase)
		}
		u, _ := url.Parse(LocalPostgresURL)
		u.Path = "/" + DevDatabase
		say("PostgreSQL: 127.0.0.1:5432, database " + DevDatabase)
		return &Postgres{URL: u.String()}, nil
	}
	return ownCluster(ctx, o, say)
}

// ping connects to dbURL and pings it, within 3 seconds.
func ping(ctx context.Context, dbURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// ensureDatabase creates the database name on the server at serverURL unless it
// exists, and reports whether it created it.
func ensureDatabase(ctx context.Context, serverURL, name string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return false, err
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look for database %s: %w", name, err)
	}
	if exists {
		return false, nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	return true, nil
}

// ownCluster starts the cluster in o.ClusterDir, creating it first when it has none.
func ownCluster(ctx context.Context, o PostgresOptions, say func(string)) (*Postgres, error) {
	const hint = "install the 'postgresql' package (e.g. apt-get install postgresql), start a server on 127.0.0.1:5432, or set PORTCULLIS_DATABASE_URL"
	if o.ClusterDir == "" {
		return nil, errors.New("no PostgreSQL answers on 127.0.0.1:5432 and no cluster directory is set; " + hint)
	}
	bin, err := findPGBinaries()
	if err != nil {
		return nil, fmt.Errorf("no PostgreSQL found (%v): %s", err, hint)
	}
	if err := os.MkdirAll(o.ClusterDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(o.ClusterDir, 0o700); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root: the postgres user runs them, and
		// must reach the cluster through the data directory (listing it stays root's).
		if err := os.Chmod(filepath.Dir(o.ClusterDir), 0o711); err != nil {
			return nil, err
		}
		if err := chownToPostgres(o.ClusterDir); err != nil {
			return nil, fmt.Errorf("running as root, a dev PostgreSQL needs the 'postgres' user (install the 'postgresql' package) or PORTCULLIS_DATABASE_URL: %w", err)
		}
	}
	logFile := o.LogFile
	if logFile == "" {
		logFile = filepath.Join(o.ClusterDir, "..", "postgres.log")
	}
	if err := os.WriteFile(logFile, nil, 0o600); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		if err := chownToPostgres(logFile); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(filepath.Join(o.ClusterDir, "PG_VERSION")); err != nil {
		say("creating a PostgreSQL cluster in " + o.ClusterDir)
		if out, err := pgCommand(ctx, bin, "initdb", "-D", o.ClusterDir, "-U", "postgres", "--auth=trust", "-E", "UTF8").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("initdb: %v: %s", err, out)
		}
		conf, err := os.OpenFile(filepath.Join(o.ClusterDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		_, err = conf.WriteString("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
		if cerr := conf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("configure the cluster: %w", err)
		}
	}
	if err := pgCommand(ctx, bin, "pg_ctl", "-D", o.ClusterDir, "status").Run(); err == nil {
		say("stopping a PostgreSQL left running in " + o.ClusterDir)
		if out, err := pgCommand(ctx, bin, "pg_ctl", "-D", o.ClusterDir, "stop", "-m", "fast", "-w").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("pg_ctl stop: %v: %s", err, out)
		}
	}
	port := 0
	for p := clusterPortFirst; p <= clusterPortLast && port == 0; p++ {
		if !Listening("127.0.0.1:" + strconv.Itoa(p)) {
			port = p
		}
	}
	if port == 0 {
		return nil, fmt.Errorf("no free port in %d-%d for a dev PostgreSQL", clusterPortFirst, clusterPortLast)
	}
	pg := &Postgres{URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), bin: bin, clusterDir: o.ClusterDir}
	// pg_ctl runs in a session of its own, so that a signal to the terminal's process
	// group cannot stop it halfway and leave a server starting up; the caller stops
	// the server afterwards.
	start := pgCommand(context.WithoutCancel(ctx), bin, "pg_ctl", "-D", o.ClusterDir, "-l", logFile, "-o", "-p "+strconv.Itoa(port), "-w", "-t", "60", "start")
	start.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := start.CombinedOutput(); err != nil {
		pg.Stop()
		return nil, fmt.Errorf("PostgreSQL in %s did not start: %v: %s\n--- %s (tail) ---\n%s", o.ClusterDir, err, out, logFile, Tail(logFile, 30))
	}
	say(fmt.Sprintf("PostgreSQL: own cluster in %s on 127.0.0.1:%d", o.ClusterDir, port))
	return pg, nil
}

// Stop stops the cluster FindPostgres started, fast, and at once if that does not do
// within 5 s; it does nothing for a server it found running. It reports what it could
// not stop.
func (p *Postgres) Stop() error {
	if p == nil || p.clusterDir == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(p.clusterDir, "postmaster.pid")); err != nil {
		return nil
	}
	ctx := context.Background()
	if pgCommand(ctx, p.bin, "pg_ctl", "-D", p.clusterDir, "stop", "-m", "fast", "-w", "-t", "5").Run() == nil {
		return nil
	}
	if out, err := pgCommand(ctx, p.bin, "pg_ctl", "-D", p.clusterDir, "stop", "-m", "immediate", "-w", "-t", "5").CombinedOutput(); err != nil {
		return fmt.Errorf("could not stop PostgreSQL in %s (%v: %s); stop it with: pg_ctl -D %s stop", p.clusterDir, err, out, p.clusterDir)
	}
	return nil
}

// pgCommand runs a PostgreSQL server binary of bin, as the postgres user when this
// process runs as root.
func pgCommand(ctx context.Context, bin, name string, args ...string) *exec.Cmd {
	path := filepath.Join(bin, name)
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.CommandContext(ctx, path, args...)
}

// findPGBinaries returns the directory holding initdb and pg_ctl: from PATH, else the
// newest /usr/lib/postgresql/<version>/bin.
func findPGBinaries() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int { v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir))); return v }
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("initdb and pg_ctl are neither on PATH nor in /usr/lib/postgresql/*/bin")
}

// chownToPostgres gives path to the postgres OS user.
func chownToPostgres(path string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}
