package stack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/pglocal"
)

// TestProcessStop stops child processes: one that ends on SIGTERM, and one whose
// whole group ignores it, which is killed, group and all, once the deadline passes.
func TestProcessStop(t *testing.T) {
	tests := []struct {
		name     string
		script   string
		wantKill bool
	}{
		{name: "ends on SIGTERM", script: "sleep 60 & wait"},
		{name: "ignores SIGTERM", script: `trap "" TERM; sleep 60 & wait; sleep 60`, wantKill: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := startProcess("sh", filepath.Join(t.TempDir(), "sh.log"), nil, "/bin/sh", "-c", tt.script)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // let the shell set its trap
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = p.stop(ctx)
			if killed := err != nil && strings.Contains(err.Error(), "killed"); killed != tt.wantKill {
				t.Fatalf("stop: %v; want killed %v", err, tt.wantKill)
			}
			if d := time.Since(start); d > 500*time.Millisecond+killWait {
				t.Fatalf("stop took %v", d)
			}
			select {
			case <-p.Exited():
			default:
				t.Fatal("the process runs after stop")
			}
			if groupAlive(p.Pid()) {
				t.Fatal("a process of the group runs after stop")
			}
			if again := p.stop(ctx); (again == nil) != (err == nil) {
				t.Fatalf("second stop: %v, first: %v", again, err)
			}
		})
	}
}

// TestStopInProcessIsBounded checks that a component whose stop overruns its
// deadline cannot hold the stack's stop up.
func TestStopInProcessIsBounded(t *testing.T) {
	s := &Stack{}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	release := make(chan struct{})
	defer close(release)
	start := time.Now()
	err := s.stopInProcess(ctx, "stuck", func(context.Context) error { <-release; return nil })
	if err == nil || !strings.Contains(err.Error(), "not stopped in time") {
		t.Fatalf("err = %v, want not stopped in time", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("stopInProcess took %v", d)
	}
}

// TestOwnCluster makes, starts and stops a PostgreSQL cluster of its own, as make run
// does when no server answers on 127.0.0.1:5432, then starts the same cluster again.
func TestOwnCluster(t *testing.T) {
	if _, err := pglocal.FindBinaries(); err != nil {
		t.Fatalf("this test needs initdb and pg_ctl: %v", err)
	}
	dir := t.TempDir()
	if os.Geteuid() == 0 {
		// The postgres user must reach the cluster through the test's directories.
		for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	o := PostgresOptions{ClusterDir: filepath.Join(dir, "data", "pg"), LogFile: filepath.Join(dir, "postgres.log")}
	if err := os.MkdirAll(filepath.Dir(o.ClusterDir), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, run := range []string{"created", "reused"} {
		var said []string
		pg, err := ownCluster(ctx, o, func(s string) { said = append(said, s) })
		if err != nil {
			t.Fatalf("%s: %v", run, err)
		}
		if err := pglocal.Ping(ctx, pg.URL); err != nil {
			_ = pg.Stop()
			t.Fatalf("%s: %v", run, err)
		}
		if other, err := ownCluster(ctx, o, func(string) {}); err == nil || !strings.Contains(err.Error(), "another dev stack") {
			_ = other.Stop()
			_ = pg.Stop()
			t.Fatalf("%s: a second stack on the running cluster: %v, want it refused", run, err)
		}
		if err := pg.Stop(); err != nil {
			t.Fatalf("%s: stop: %v", run, err)
		}
		if err := pglocal.Ping(ctx, pg.URL); err == nil {
			t.Fatalf("%s: the cluster answers after Stop", run)
		}
		if creating := strings.Contains(strings.Join(said, "\n"), "creating"); creating != (run == "created") {
			t.Fatalf("%s: said %q", run, said)
		}
	}
}
