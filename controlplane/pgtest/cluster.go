package pgtest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// sharedCluster returns the URL of a throwaway PostgreSQL cluster under the system's
// temp dir, initialising and starting it if needed. The cluster is shared by every test
// process of this OS user and is left running when the tests end, because no helper can
// know which process finishes last; the next test run reuses it. Stop it with
//
//	pg_ctl -D $TMPDIR/portcullis-pgtest-<uid>/data stop
func sharedCluster() (string, error) {
	root := filepath.Join(os.TempDir(), fmt.Sprintf("portcullis-pgtest-%d", os.Getuid()))
	lock, err := os.OpenFile(root+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("lock throwaway cluster: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock throwaway cluster: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	return startCluster(root)
}

// startCluster makes sure a cluster lives in root/data and runs, and returns its URL.
// Run as root, the server binaries run as the postgres OS user, who then owns root.
func startCluster(root string) (string, error) {
	bin, err := findBinaries()
	if err != nil {
		return "", err
	}
	run := func(name string, args ...string) ([]byte, error) {
		return pgCommand(bin, name, args...).CombinedOutput()
	}
	data := filepath.Join(root, "data")
	if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err != nil {
		if err := os.RemoveAll(root); err != nil {
			return "", err
		}
		if err := os.MkdirAll(root, 0o700); err != nil {
			return "", err
		}
		if err := ownForPostgres(root); err != nil {
			return "", err
		}
		if out, err := run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"); err != nil {
			return "", fmt.Errorf("initdb: %v: %s", err, out)
		}
	}
	if _, err := run("pg_ctl", "status", "-D", data); err == nil {
		port, err := runningPort(data)
		if err != nil {
			return "", err
		}
		return clusterURL(port), nil
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off", port, root)
	if out, err := run("pg_ctl", "start", "-w", "-t", "60", "-D", data, "-l", filepath.Join(root, "postgres.log"), "-o", opts); err != nil {
		return "", fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return clusterURL(port), nil
}

// stopCluster stops the cluster in root/data.
func stopCluster(root string) error {
	bin, err := findBinaries()
	if err != nil {
		return err
	}
	out, err := pgCommand(bin, "pg_ctl", "stop", "-m", "fast", "-w", "-D", filepath.Join(root, "data")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// pgCommand runs a server binary, as the postgres OS user when running as root.
func pgCommand(bin, name string, args ...string) *exec.Cmd {
	path := filepath.Join(bin, name)
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func clusterURL(port int) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// findBinaries returns the directory holding initdb and pg_ctl: from PATH, else the
// newest /usr/lib/postgresql/<version>/bin.
func findBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found in PATH or /usr/lib/postgresql/*/bin")
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// ownForPostgres hands dir to the postgres OS user when running as root, because
// initdb refuses to run as root.
func ownForPostgres(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("running as root needs a postgres OS user to run the server: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

// runningPort reads the port of a running server from its postmaster.pid (line 4).
func runningPort(data string) (int, error) {
	f, err := os.Open(filepath.Join(data, "postmaster.pid"))
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
