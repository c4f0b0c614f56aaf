package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/portcullis-gw/portcullis/controlplane/pglocal"
)

// sharedCluster returns the URL of a throwaway PostgreSQL cluster under the system's
// temp dir, initialising and starting it if needed. The cluster is shared by every test
// process of this OS user and is left running when the tests end, because no helper can
// know which process finishes last; the next test run reuses it. Stop it with
//
//	pg_ctl -D $TMPDIR/portcullis-pgtest-<uid>/data stop
func sharedCluster(ctx context.Context) (string, error) {
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
	return startCluster(ctx, throwawayCluster(root))
}

// throwawayCluster is the cluster in root/data, its log in root/postgres.log.
func throwawayCluster(root string) *pglocal.Cluster {
	return &pglocal.Cluster{Dir: filepath.Join(root, "data"), Throwaway: true}
}

// startCluster makes sure c exists and runs, on a port the kernel picks when it has to
// start it, and returns its URL.
func startCluster(ctx context.Context, c *pglocal.Cluster) (string, error) {
	if _, err := c.Init(ctx); err != nil {
		return "", err
	}
	port, err := c.Running(ctx)
	if err != nil {
		return "", err
	}
	if port != 0 {
		return pglocal.URL(port), nil
	}
	if port, err = pglocal.FreePort(0, 0); err != nil {
		return "", err
	}
	if err := c.Start(ctx, port); err != nil {
		return "", err
	}
	return pglocal.URL(port), nil
}
