package devstack

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// stopDeadline is how soon after the signal every process and port of the stack must
// be gone.
const stopDeadline = 15 * time.Second

// TestMakeRunStopsOnEverySignal starts make run in a process group of its own, as a
// terminal runs it, once per way of stopping it: SIGTERM, SIGINT and SIGHUP (a
// terminal closing) to make's whole group, where make passes SIGTERM on to the dev
// command a second time; SIGTERM to make alone, which passes it on; SIGTERM to the dev
// command alone. Each time every port of the stack accepts connections first; then,
// within stopDeadline, no process of the stack may remain (make, the dev command, the
// binaries it started and whatever they started in turn, all of which inherit the
// data directory's variable) and none of its ports may accept a connection.
func TestMakeRunStopsOnEverySignal(t *testing.T) {
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Fatalf("this test finds the stack's processes in /proc (Linux): %v", err)
	}
	for _, c := range []struct {
		name   string
		sig    syscall.Signal
		target string // "group" (make's), "make" or "command" (the dev command)
	}{
		{"SIGTERM to the group", syscall.SIGTERM, "group"},
		{"SIGINT to the group", syscall.SIGINT, "group"},
		{"SIGHUP to the group", syscall.SIGHUP, "group"},
		{"SIGTERM to make", syscall.SIGTERM, "make"},
		{"SIGTERM to the dev command", syscall.SIGTERM, "command"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := startMakeRun(t)
			procs := stackProcesses(d.dataDir)
			// The control plane and the data planes run in the dev command's process,
			// the mock upstream in a child process of its own.
			for _, want := range []string{"make --no-print-directory run", "bin/portcullis-dev", "bin/mockupstream"} {
				if !slices.ContainsFunc(slices.Collect(maps.Values(procs)), func(cmd string) bool { return strings.Contains(cmd, want) }) {
					t.Fatalf("no process of the stack runs %q; found %v", want, procs)
				}
			}
			for name, addr := range d.addrs {
				if !listening(addr) {
					t.Fatalf("%s: nothing listens on %s before the stop", name, addr)
				}
			}

			var target int
			switch c.target {
			case "group":
				target = -d.pid // make leads the group
			case "make":
				target = d.pid
			case "command":
				target = commandPID(t, procs)
			}
			start := time.Now()
			if err := syscall.Kill(target, c.sig); err != nil {
				t.Fatal(err)
			}
			var left []string
			if !waitfor.Until(stopDeadline, func() bool { left = leftovers(d); return len(left) == 0 }) {
				t.Fatalf("%v after %s, still there: %s", stopDeadline, c.name, strings.Join(left, "; "))
			}
			select {
			case <-d.exited:
				d.stopped = true
			case <-time.After(time.Until(start.Add(stopDeadline))):
				t.Fatalf("make still running %v after %s", stopDeadline, c.name)
			}
			t.Logf("the stack was gone %v after %s", time.Since(start).Round(time.Millisecond), c.name)
		})
	}
}

// startMakeRun starts make run as startDevstack does. Its cleanup kills whatever is
// left of the stack if the test failed to stop it.
func startMakeRun(t *testing.T) *devstack {
	t.Helper()
	d := startDevstack(t)
	t.Cleanup(func() {
		for pid, cmd := range stackProcesses(d.dataDir) {
			t.Logf("killing %d (%s), left by the stack", pid, cmd)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return d
}

// stackProcesses returns the command lines, by pid, of the processes whose
// environment has PORTCULLIS_DEV_DATA_DIR=dataDir: make, the dev command, every
// process it started and what those started, since they inherit it. Processes that cannot be
// read, and zombies (whose environment is gone), are left out.
func stackProcesses(dataDir string) map[int]string {
	marker := []byte("PORTCULLIS_DEV_DATA_DIR=" + dataDir)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	procs := map[int]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !slices.ContainsFunc(bytes.Split(env, []byte{0}), func(kv []byte) bool { return bytes.Equal(kv, marker) }) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		procs[pid] = strings.TrimSpace(string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return procs
}

// leftovers describes what is left of the stack d: its processes, and its addresses
// that accept connections.
func leftovers(d *devstack) []string {
	var left []string
	for pid, cmd := range stackProcesses(d.dataDir) {
		left = append(left, fmt.Sprintf("process %d (%s)", pid, cmd))
	}
	for name, addr := range d.addrs {
		if listening(addr) {
			left = append(left, fmt.Sprintf("%s listening on %s", name, addr))
		}
	}
	slices.Sort(left)
	return left
}

// commandPID returns the pid of the dev command among procs.
func commandPID(t *testing.T, procs map[int]string) int {
	t.Helper()
	for pid, cmd := range procs {
		if strings.Contains(cmd, "bin/portcullis-dev") {
			return pid
		}
	}
	t.Fatalf("no bin/portcullis-dev among %v", procs)
	return 0
}

// listening reports whether something accepts TCP connections on addr.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
