package vaulttest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests exercise the launcher binary itself, so they build it even when an
// external Vault is configured.

func TestLauncherStopsWhenStdinCloses(t *testing.T) {
	t.Parallel()
	l, err := Launch(context.Background(), buildLauncher(t), LaunchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Stop(context.Background()) })
	if !strings.HasPrefix(l.Addr, "http://127.0.0.1:") || l.RootToken == "" || l.TokenFile != "" {
		t.Fatalf("ready line without -token-file: addr %q, token_file %q, root_token set %t; want an http://127.0.0.1: addr and root_token only",
			l.Addr, l.TokenFile, l.RootToken != "")
	}

	if err := l.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Exited():
		if err := l.Err(); err != nil {
			t.Fatalf("launcher exit after stdin EOF: %v\nstderr:\n%s", err, l.StderrTail(stderrLines))
		}
	case <-time.After(stopTimeout):
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

// TestLaunch runs stand-ins for the launcher, shell scripts, through Launch: what it
// accepts as a ready line, what it refuses, and how Stop ends a launcher that ignores
// SIGTERM.
func TestLaunch(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "root-token")
	tests := []struct {
		name    string
		script  string
		o       LaunchOptions
		wantErr string
	}{
		{name: "ready", script: `echo oops >&2; echo '{"addr":"http://127.0.0.1:8200/","token_file":"` + tokenFile + `"}'; exec sleep 60`,
			o: LaunchOptions{TokenFile: tokenFile}},
		{name: "exits first", script: `echo broken >&2; exit 3`, wantErr: "exited before it was ready"},
		{name: "not loopback", script: `echo '{"addr":"http://192.0.2.1:8200"}'; exec sleep 60`, wantErr: "want http:// on loopback"},
		{name: "other token file", script: `echo '{"addr":"http://127.0.0.1:8200","token_file":"/elsewhere"}'; exec sleep 60`,
			o: LaunchOptions{TokenFile: tokenFile}, wantErr: "wrote its root token to"},
		{name: "not JSON", script: `echo ready; exec sleep 60`, wantErr: "not JSON"},
		{name: "silent", script: `exec sleep 60`, o: LaunchOptions{ReadyTimeout: 200 * time.Millisecond}, wantErr: "not ready after 200ms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "launcher")
			if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+tc.script+"\n"), 0o700); err != nil {
				t.Fatal(err)
			}
			tc.o.LogFile = filepath.Join(t.TempDir(), "vault.log")
			l, err := launchScript(bin, tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Launch: %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Addr != "http://127.0.0.1:8200" || l.TokenFile != tokenFile {
				t.Fatalf("Launch: addr %q, token file %q", l.Addr, l.TokenFile)
			}
			if err := l.Stop(context.Background()); err == nil || !strings.Contains(err.Error(), "signal: terminated") {
				t.Fatalf("Stop: %v, want the launcher's exit by SIGTERM", err)
			}
			if log, err := os.ReadFile(tc.o.LogFile); err != nil || string(log) != "oops\n" {
				t.Fatalf("log file: %q, %v; want the launcher's stderr", log, err)
			}
		})
	}

	t.Run("ignores SIGTERM", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "launcher")
		script := "#!/bin/sh\ntrap '' TERM\necho '{\"addr\":\"http://127.0.0.1:8200\"}'\nwhile :; do sleep 1; done\n"
		if err := os.WriteFile(bin, []byte(script), 0o700); err != nil {
			t.Fatal(err)
		}
		// A group of its own: the kill reaches the shell's sleep too.
		l, err := launchScript(bin, LaunchOptions{SysProcAttr: &syscall.SysProcAttr{Setpgid: true}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := l.Stop(ctx); err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("Stop: %v, want killed", err)
		}
		if d := time.Since(start); d > 200*time.Millisecond+killWait {
			t.Fatalf("Stop took %v", d)
		}
		if again := l.Stop(ctx); again == nil {
			t.Fatal("a second Stop forgot the first's error")
		}
	})
}

// launchScript is Launch of a script this test has just written. A fork elsewhere in
// the process (the package's parallel tests) between the write and its close can
// leave the file open for writing in a child for an instant, and exec then fails
// with "text file busy" (ETXTBSY): that is retried.
func launchScript(bin string, o LaunchOptions) (*Launcher, error) {
	for i := 0; ; i++ {
		l, err := Launch(context.Background(), bin, o)
		if err == nil || i == 20 || !strings.Contains(err.Error(), "text file busy") {
			return l, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
