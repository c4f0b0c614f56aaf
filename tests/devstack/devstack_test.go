// Package devstack tests `make run` (scripts/devstack.sh) as a developer uses it: the
// script builds the binaries, starts Postgres-backed control plane, embedded NATS, two
// data planes and the mock upstream, seeds the demo tenant and prints a curl; a
// request with the minted token is served; Ctrl-C stops every process it started.
package devstack

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logtest"

	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
)

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestMakeRunServesTheDemoAndStopsCleanly(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	addrs := map[string]string{
		"PORTCULLIS_DEV_CONTROLPLANE_LISTEN": freeAddr(t),
		"PORTCULLIS_DEV_EU_LISTEN":           freeAddr(t),
		"PORTCULLIS_DEV_US_LISTEN":           freeAddr(t),
		"PORTCULLIS_MOCK_LISTEN":             freeAddr(t),
		"PORTCULLIS_EMBEDDED_NATS_LISTEN":    freeAddr(t),
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "devstack.sh"))
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"PORTCULLIS_DATABASE_URL="+pgtest.Database(t),
		"PORTCULLIS_DEV_DATA_DIR="+dataDir,
		"PORTCULLIS_DEV_WAIT_SECONDS=120",
	)
	for k, v := range addrs {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's Ctrl-C reaches the whole group
	var out logtest.Buffer
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(&out, sc.Text())
			if !signalled && strings.Contains(sc.Text(), "dev stack is up") {
				signalled = true
				close(up)
			}
		}
	}()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			// The script's trap stops the processes it started (each leads its own
			// group); SIGKILL is the last resort for the script itself.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
		}
		if t.Failed() {
			t.Logf("make run output:\n%s", out.String())
		}
	})

	select {
	case <-up:
		t.Logf("dev stack up after %v (build included)", time.Since(start).Round(time.Millisecond))
	case err := <-exited:
		stopped = true
		t.Fatalf("devstack.sh exited before the stack was up: %v", err)
	case <-time.After(8 * time.Minute):
		t.Fatal("dev stack not up after 8 minutes")
	}
	// Wait for the printed curl, the last thing the script says.
	waitFor(t, 10*time.Second, "printed curl", func() bool { return strings.Contains(out.String(), "-d '{") })
	printed := out.String()
	euURL := "http://" + addrs["PORTCULLIS_DEV_EU_LISTEN"]
	if !strings.Contains(printed, "curl -sS "+euURL+"/v1/chat/completions") {
		t.Fatalf("no ready-to-paste curl for the eu data plane in:\n%s", printed)
	}

	// The request the printed curl makes, with the token the script minted.
	token, err := os.ReadFile(filepath.Join(dataDir, "dev-tokens", "moltbot-agent-07.jwt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, region := range []string{"PORTCULLIS_DEV_EU_LISTEN", "PORTCULLIS_DEV_US_LISTEN"} {
		req, _ := http.NewRequest("POST", "http://"+addrs[region]+"/v1/chat/completions",
			strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}`))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// moltbot-agent-07 has residency eu: served by openai-eu from either worker.
		if resp.StatusCode != http.StatusOK || resp.Header.Get("x-portcullis-deployment") != "openai-eu" {
			t.Fatalf("%s: status %d deployment %q: %s", region, resp.StatusCode, resp.Header.Get("x-portcullis-deployment"), body)
		}
	}
	if strings.Contains(printed, strings.TrimSpace(string(token))) {
		t.Fatal("make run printed a token")
	}

	// Ctrl-C stops everything.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		stopped = true
	case <-time.After(60 * time.Second):
		t.Fatal("devstack.sh still running 60 s after Ctrl-C")
	}
	for name, addr := range addrs {
		waitFor(t, 15*time.Second, name+" closed", func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return true
			}
			c.Close()
			return false
		})
	}
}

func waitFor(t *testing.T, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not true after %v", what, deadline)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
