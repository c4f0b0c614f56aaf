package pglocal

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestCluster makes a cluster, starts it on a free port, creates and drops a database
// on it, stops it, and checks what each step reports when repeated.
func TestCluster(t *testing.T) {
	root, err := os.MkdirTemp("", "pglocal-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	ctx := context.Background()
	c := &Cluster{Dir: filepath.Join(root, "data"), Throwaway: true}
	t.Cleanup(func() { _ = c.Stop(ctx) })

	for i, want := range []bool{true, false} {
		created, err := c.Init(ctx)
		if err != nil {
			t.Fatalf("init %d (needs initdb and pg_ctl: %s): %v", i+1, InstallHint, err)
		}
		if created != want {
			t.Fatalf("init %d: created %t, want %t", i+1, created, want)
		}
	}
	if port, err := c.Running(ctx); err != nil || port != 0 {
		t.Fatalf("before start: Running = %d, %v; want 0", port, err)
	}
	port, err := FreePort(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx, port); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Running(ctx); err != nil || got != port {
		t.Fatalf("after start: Running = %d, %v; want %d", got, err, port)
	}
	server := URL(port)
	if err := Ping(ctx, server); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "postgres.log")); err != nil {
		t.Fatalf("server log next to the data directory: %v", err)
	}

	for i, want := range []bool{true, false} {
		created, err := EnsureDatabase(ctx, server, "pglocal_Test")
		if err != nil || created != want {
			t.Fatalf("ensure database %d: created %t, %v; want %t", i+1, created, err, want)
		}
	}
	db, err := WithDatabase(server, "pglocal_Test")
	if err != nil {
		t.Fatal(err)
	}
	if err := Ping(ctx, db); err != nil {
		t.Fatalf("ping the new database: %v", err)
	}
	for i := range 2 {
		if err := DropDatabase(ctx, server, "pglocal_Test"); err != nil {
			t.Fatalf("drop database %d: %v", i+1, err)
		}
	}
	if Ping(ctx, db) == nil {
		t.Fatal("the dropped database answers")
	}

	for i := range 2 {
		if err := c.Stop(ctx); err != nil {
			t.Fatalf("stop %d: %v", i+1, err)
		}
	}
	if got, err := c.Running(ctx); err != nil || got != 0 {
		t.Fatalf("after stop: Running = %d, %v; want 0", got, err)
	}
	if Ping(ctx, server) == nil {
		t.Fatal("the cluster answers after Stop")
	}
}

func TestFreePort(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	p := busy.Addr().(*net.TCPAddr).Port

	if got, err := FreePort(p, p); err == nil {
		t.Fatalf("FreePort(%d, %d) = %d on a busy port, want an error", p, p, got)
	}
	// p+1 may be taken by chance: then an error is right.
	if got, err := FreePort(p, p+1); err == nil && got != p+1 {
		t.Fatalf("FreePort(%d, %d) = %d, want %d", p, p+1, got, p+1)
	}
	got, err := FreePort(0, 0)
	if err != nil || got == 0 {
		t.Fatalf("FreePort(0, 0) = %d, %v", got, err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(got))
	if err != nil {
		t.Fatalf("the port FreePort gave is not free: %v", err)
	}
	l.Close()
}

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		name, server, want string
	}{
		{"url", "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable", "postgres://u:p@127.0.0.1:5432/pc_test_x?sslmode=disable"},
		{"url without path", "postgresql://127.0.0.1", "postgresql://127.0.0.1/pc_test_x"},
		{"keyword/value", "host=127.0.0.1 dbname=postgres", "host=127.0.0.1 dbname=postgres dbname=pc_test_x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := WithDatabase(tc.server, "pc_test_x")
			if err != nil || got != tc.want {
				t.Fatalf("WithDatabase(%q) = %q, %v; want %q", tc.server, got, err, tc.want)
			}
		})
	}
}

func TestFindBinaries(t *testing.T) {
	dir, err := FindBinaries()
	if err != nil {
		t.Fatalf("this package's tests need initdb and pg_ctl: %v", err)
	}
	for _, name := range []string{"initdb", "pg_ctl"} {
		if !isFile(filepath.Join(dir, name)) {
			t.Errorf("%s has no %s", dir, name)
		}
	}
}
