package pglocal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Bounds of the pg_ctl waits, in seconds.
const (
	startWaitSeconds = "60"
	stopWaitSeconds  = "5"
)

// logTailLines is how much of the server log a failed start quotes.
const logTailLines = 30

// FindBinaries returns the directory that holds initdb and pg_ctl: the one of initdb on
// PATH (after symbolic links), else the newest /usr/lib/postgresql/<version>/bin. Its
// error says which package to install.
func FindBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs := []string{filepath.Dir(p)}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append([]string{filepath.Dir(real)}, dirs...)
		}
		for _, dir := range dirs {
			if isFile(filepath.Join(dir, "pg_ctl")) {
				return dir, nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	version := func(dir string) int { v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir))); return v }
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if isFile(filepath.Join(dir, "initdb")) && isFile(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	return "", errors.New("initdb and pg_ctl are neither on PATH nor in /usr/lib/postgresql/*/bin: " + InstallHint)
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir()
}

// Cluster is a PostgreSQL cluster of its own in a data directory. Init creates it, and
// Start runs its server on 127.0.0.1, with no Unix socket, user postgres trusted; the
// server runs in a session of its own and outlives this process until Stop. A Cluster
// is not safe for concurrent use; to share one directory between processes, hold a
// file lock around Init and Start.
type Cluster struct {
	// Dir is the data directory (initdb's -D). Its parent must be reachable by the
	// postgres OS user when running as root (Init makes it so).
	Dir string
	// LogFile receives the server's output, new at each Start; "" is postgres.log
	// next to Dir.
	LogFile string
	// Throwaway turns durability off (initdb --no-sync, fsync=off): for a cluster
	// whose data may be lost when the machine crashes.
	Throwaway bool
	// Bin is the directory of initdb and pg_ctl; "" is FindBinaries'.
	Bin string
}

// Initialized reports whether Dir holds a cluster already.
func (c *Cluster) Initialized() bool {
	return isFile(filepath.Join(c.Dir, "PG_VERSION"))
}

// Init creates the cluster with initdb unless Dir holds one, and reports whether it
// created it. It creates Dir (mode 0700) when missing.
func (c *Cluster) Init(ctx context.Context) (created bool, err error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return false, fmt.Errorf("cluster directory: %w", err)
	}
	if err := os.Chmod(c.Dir, 0o700); err != nil {
		return false, fmt.Errorf("cluster directory: %w", err)
	}
	if os.Geteuid() == 0 {
		// The postgres user must reach Dir through its parent; listing the parent
		// stays its owner's.
		if err := os.Chmod(filepath.Dir(c.Dir), 0o711); err != nil {
			return false, fmt.Errorf("cluster directory: %w", err)
		}
		if err := chownToPostgres(c.Dir); err != nil {
			return false, err
		}
	}
	if c.Initialized() {
		return false, nil
	}
	args := []string{"-D", c.Dir, "-U", "postgres", "--auth=trust", "-E", "UTF8"}
	if c.Throwaway {
		args = append(args, "--no-sync")
	}
	cmd, err := c.command(ctx, "initdb", args...)
	if err != nil {
		return false, err
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Errorf("initdb in %s: %v: %s", c.Dir, err, strings.TrimSpace(string(out)))
	}
	return true, nil
}

// Running returns the port of the cluster's server, or 0 when it does not run.
func (c *Cluster) Running(ctx context.Context) (port int, err error) {
	cmd, err := c.command(ctx, "pg_ctl", "-D", c.Dir, "status")
	if err != nil {
		return 0, err
	}
	if cmd.Run() != nil {
		return 0, nil // 3: not running; 4: no cluster there
	}
	port, err = pidFilePort(c.Dir)
	if err != nil {
		return 0, fmt.Errorf("the server in %s runs, but its port is unknown: %w", c.Dir, err)
	}
	return port, nil
}

// Start starts the cluster's server on 127.0.0.1:port and waits up to 60 s until it
// accepts connections. pg_ctl runs in a session of its own, so that a signal to the
// terminal's process group cannot stop it halfway and leave a server starting up, and
// ctx only bounds what comes before it. When the server does not start, Start stops
// what may run and returns why, with the end of the server's log.
func (c *Cluster) Start(ctx context.Context, port int) error {
	logFile := c.logFile()
	if err := os.WriteFile(logFile, nil, 0o600); err != nil {
		return fmt.Errorf("server log: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := chownToPostgres(logFile); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// pg_ctl hands -o to a shell: '' is an empty setting (no Unix socket).
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=''", port)
	if c.Throwaway {
		opts += " -c fsync=off"
	}
	start, err := c.command(context.WithoutCancel(ctx), "pg_ctl", "-D", c.Dir, "-l", logFile, "-o", opts, "-w", "-t", startWaitSeconds, "start")
	if err != nil {
		return err
	}
	start.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := start.CombinedOutput(); err != nil {
		_ = c.Stop(context.WithoutCancel(ctx))
		return fmt.Errorf("PostgreSQL in %s did not start on 127.0.0.1:%d: %v: %s\n--- %s (tail) ---\n%s",
			c.Dir, port, err, strings.TrimSpace(string(out)), logFile, tailLines(logFile, logTailLines))
	}
	return nil
}

// Stop stops the cluster's server, fast, and at once (immediate shutdown) if that does
// not do within 5 s. It does nothing when no server runs there, and says how to stop
// one it could not.
func (c *Cluster) Stop(ctx context.Context) error {
	if !isFile(filepath.Join(c.Dir, "postmaster.pid")) {
		return nil
	}
	fast, err := c.command(ctx, "pg_ctl", "-D", c.Dir, "stop", "-m", "fast", "-w", "-t", stopWaitSeconds)
	if err != nil {
		return err
	}
	if fast.Run() == nil {
		return nil
	}
	now, err := c.command(ctx, "pg_ctl", "-D", c.Dir, "stop", "-m", "immediate", "-w", "-t", stopWaitSeconds)
	if err != nil {
		return err
	}
	if out, err := now.CombinedOutput(); err != nil {
		return fmt.Errorf("could not stop PostgreSQL in %s (%v: %s); stop it with: pg_ctl -D %s stop",
			c.Dir, err, strings.TrimSpace(string(out)), c.Dir)
	}
	return nil
}

// logFile is the server log's path.
func (c *Cluster) logFile() string {
	if c.LogFile != "" {
		return c.LogFile
	}
	return filepath.Join(filepath.Dir(c.Dir), "postgres.log")
}

// command is the server binary name of c.Bin (found on first use) with args, run as
// the postgres OS user when this process runs as root.
func (c *Cluster) command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	if c.Bin == "" {
		bin, err := FindBinaries()
		if err != nil {
			return nil, err
		}
		c.Bin = bin
	}
	path := filepath.Join(c.Bin, name)
	if os.Geteuid() == 0 {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...), nil
	}
	return exec.CommandContext(ctx, path, args...), nil
}

// chownToPostgres gives path to the postgres OS user.
func chownToPostgres(path string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root, PostgreSQL runs as the postgres OS user (%v): %s", err, InstallHint)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("give %s to the postgres user: %w", path, err)
	}
	return nil
}

// pidFilePort reads the port of a running server from line 4 of its postmaster.pid.
func pidFilePort(dir string) (int, error) {
	f, err := os.Open(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for i := 1; sc.Scan(); i++ {
		if i == 4 {
			return strconv.Atoi(strings.TrimSpace(sc.Text()))
		}
	}
	return 0, errors.New("postmaster.pid has no port line")
}

// tailLines returns the last n lines of the file at path, or why it cannot be read.
func tailLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
