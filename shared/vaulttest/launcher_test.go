package vaulttest

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// These tests exercise the launcher binary itself, so they build it even when an
// external Vault is configured.

func TestLauncherStopsWhenStdinCloses(t *testing.T) {
	t.Parallel()
	l, err := spawn(buildLauncher(t), "-listen", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.stop() })
	line, err := l.waitReady(readyTimeout)
	if err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, l.stderr)
	}
	var ready readyLine
	if err := json.Unmarshal(line, &ready); err != nil {
		t.Fatalf("ready line is not JSON: %v", err)
	}
	if !strings.HasPrefix(ready.Addr, "http://127.0.0.1:") || ready.RootToken == "" || ready.TokenFile != "" {
		t.Fatalf("ready line without -token-file: addr %q, token_file %q, root_token set %t; want an http://127.0.0.1: addr and root_token only",
			ready.Addr, ready.TokenFile, ready.RootToken != "")
	}

	if err := l.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	timer := time.NewTimer(stopTimeout)
	defer timer.Stop()
	select {
	case err := <-l.done:
		l.done <- err // for the cleanup's stop
		if err != nil {
			t.Fatalf("launcher exit after stdin EOF: %v\nstderr:\n%s", err, l.stderr)
		}
	case <-timer.C:
		t.Fatalf("launcher still running %s after its stdin closed", stopTimeout)
	}
}

func TestLauncherRefusesNonLoopbackListen(t *testing.T) {
	t.Parallel()
	bin := buildLauncher(t)
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "example.com:0"} {
		t.Run(listen, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "-listen", listen).CombinedOutput()
			if err == nil {
				t.Fatalf("launcher accepted -listen %s", listen)
			}
			if !strings.Contains(string(out), "loopback") {
				t.Errorf("launcher output for -listen %s does not explain the loopback rule:\n%s", listen, out)
			}
		})
	}
}
