// Package devstack tests `make run` (scripts/devstack.sh) as a developer uses it: the
// script builds the binaries, starts Postgres-backed control plane, embedded NATS, two
// data planes and the mock upstream, seeds the demo tenant and prints a curl; a
// request with the minted token is served; a failure injected into one deployment
// through the mock's control API opens its breaker and the fallback takes over;
// Ctrl-C stops every process it started. A second run takes the keys from a real
// Vault and rotates and revokes them under traffic (vault_test.go).
package devstack

import (
	"bufio"
	"context"
	"encoding/json"
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

// devstack is one run of scripts/devstack.sh (make run) on free ports, with its data
// directory and Postgres database of its own.
type devstack struct {
	t       *testing.T
	root    string
	dataDir string
	addrs   map[string]string // listen address by environment variable
	out     *logtest.Buffer   // what the script printed
	pid     int
	exited  chan error
	stopped bool
}

// startDevstack runs the script with env added to the environment and waits until it
// says the stack is up and has printed its last example. The test's Vault settings
// are dropped from the inherited environment, so env alone decides where keys come
// from. Cleanup stops the script if the test did not.
func startDevstack(t *testing.T, env ...string) *devstack {
	t.Helper()
	return launchDevstack(t, []string{"bash", filepath.Join("scripts", "devstack.sh")}, env...)
}

// launchDevstack is startDevstack with the command line argv, run from the repository
// root in a process group of its own: the script, or make run.
func launchDevstack(t *testing.T, argv []string, env ...string) *devstack {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	d := &devstack{t: t, root: root, dataDir: t.TempDir(), out: &logtest.Buffer{}, exited: make(chan error, 1)}
	d.addrs = map[string]string{
		"PORTCULLIS_DEV_CONTROLPLANE_LISTEN": freeAddr(t),
		"PORTCULLIS_DEV_EU_LISTEN":           freeAddr(t),
		"PORTCULLIS_DEV_US_LISTEN":           freeAddr(t),
		"PORTCULLIS_MOCK_LISTEN":             freeAddr(t),
		"PORTCULLIS_MOCK_CONTROL_LISTEN":     freeAddr(t),
		"PORTCULLIS_EMBEDDED_NATS_LISTEN":    freeAddr(t),
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = root
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "VAULT_ADDR" && k != "VAULT_TOKEN" && !strings.HasPrefix(k, "PORTCULLIS_DEV_VAULT") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env,
		"PORTCULLIS_DATABASE_URL="+pgtest.Database(t),
		"PORTCULLIS_DEV_DATA_DIR="+d.dataDir,
		"PORTCULLIS_DEV_WAIT_SECONDS=120",
	)
	for k, v := range d.addrs {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's Ctrl-C reaches the whole group
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(d.out, sc.Text())
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
	d.pid = cmd.Process.Pid
	go func() { d.exited <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		if !d.stopped {
			// The script's trap stops the processes it started (each leads its own
			// group); SIGKILL is the last resort for the script itself.
			_ = syscall.Kill(-d.pid, syscall.SIGINT)
			select {
			case <-d.exited:
			case <-time.After(60 * time.Second):
				_ = syscall.Kill(-d.pid, syscall.SIGKILL)
				<-d.exited
			}
		}
		if t.Failed() {
			t.Logf("make run output:\n%s", d.out.String())
		}
	})

	select {
	case <-up:
		t.Logf("dev stack up after %v (build included)", time.Since(start).Round(time.Millisecond))
	case err := <-d.exited:
		d.stopped = true
		t.Fatalf("devstack.sh exited before the stack was up: %v", err)
	case <-time.After(8 * time.Minute):
		t.Fatal("dev stack not up after 8 minutes")
	}
	// Wait for the printed curls: the chat completion, then the control API's example,
	// the last thing the script says.
	waitFor(t, 10*time.Second, "printed curls", func() bool {
		return strings.Contains(d.out.String(), `"content":"Hello"}]}'`) && strings.Contains(d.out.String(), `"for_seconds":60}'`)
	})
	return d
}

// url is the base URL of the listener the environment variable key configures.
func (d *devstack) url(key string) string { return "http://" + d.addrs[key] }

// stop sends Ctrl-C and checks that every process the script started has stopped.
func (d *devstack) stop() {
	t := d.t
	t.Helper()
	if err := syscall.Kill(-d.pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.exited:
		d.stopped = true
	case <-time.After(60 * time.Second):
		t.Fatal("devstack.sh still running 60 s after Ctrl-C")
	}
	for name, addr := range d.addrs {
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

func TestMakeRunServesTheDemoAndStopsCleanly(t *testing.T) {
	d := startDevstack(t)
	printed := d.out.String()
	euURL := d.url("PORTCULLIS_DEV_EU_LISTEN")
	if !strings.Contains(printed, "curl -sS "+euURL+"/v1/chat/completions") {
		t.Fatalf("no ready-to-paste curl for the eu data plane in:\n%s", printed)
	}
	if !strings.Contains(printed, "devstack: no Vault (set VAULT_ADDR and VAULT_TOKEN, or PORTCULLIS_DEV_VAULT=1): deployments use the file key source") {
		t.Fatalf("make run does not say that it uses the file key source:\n%s", printed)
	}

	// The request the printed curl makes, with the token the script minted.
	token := readToken(t, d.dataDir, "moltbot-agent-07")
	for _, region := range []string{"PORTCULLIS_DEV_EU_LISTEN", "PORTCULLIS_DEV_US_LISTEN"} {
		resp, body := chat(t, d.url(region), token, "gpt-4o-mini")
		// moltbot-agent-07 has residency eu: served by openai-eu from either worker.
		if resp.StatusCode != http.StatusOK || resp.Header.Get("x-portcullis-deployment") != "openai-eu" {
			t.Fatalf("%s: status %d deployment %q: %s", region, resp.StatusCode, resp.Header.Get("x-portcullis-deployment"), body)
		}
	}
	if strings.Contains(printed, token) {
		t.Fatal("make run printed a token")
	}

	failOver(t, d.addrs, d.dataDir, printed)
	d.stop()
}

// failOver makes openai-eu fail through the mock's control API, as the summary
// shows, and checks what a user is told to watch: moltbot-agent-07 (residency eu,
// tier default: gpt-4o-mini only, served by openai-eu alone) gets the fallback
// llama3-8b on ollama-eu once the eu data plane's breaker for openai-eu is open, and
// premium-app (no residency) keeps gpt-4o on openai-us, which the failure spares.
func failOver(t *testing.T, addrs map[string]string, dataDir, printed string) {
	t.Helper()
	control := "http://" + addrs["PORTCULLIS_MOCK_CONTROL_LISTEN"] + "/mock/fail"
	eu := "http://" + addrs["PORTCULLIS_DEV_EU_LISTEN"]
	if !strings.Contains(printed, "curl -s -XPOST "+control+" -d '{") {
		t.Fatalf("no example of the control API in:\n%s", printed)
	}
	status, body := send(t, http.MethodPost, control, `{"deployment":"openai-eu","mode":"5xx","for_seconds":120}`)
	if status != http.StatusOK || !strings.Contains(body, `"mode":"5xx"`) {
		t.Fatalf("POST /mock/fail: status %d: %s", status, body)
	}

	moltbot := readToken(t, dataDir, "moltbot-agent-07")
	var statuses []int
	fellBack := false
	for range 40 { // two failed requests open the breaker (5 attempts); 40 is plenty
		resp, body := chat(t, eu, moltbot, "gpt-4o-mini")
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Portcullis-Fallback") != "" {
			if got, dep := resp.Header.Get("X-Portcullis-Fallback"), resp.Header.Get("X-Portcullis-Deployment"); got != "llama3-8b" || dep != "ollama-eu" {
				t.Fatalf("fallback %q on deployment %q, want llama3-8b on ollama-eu: %s", got, dep, body)
			}
			fellBack = true
			break
		}
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("openai-eu answered while it was made to fail: deployment %q: %s", resp.Header.Get("X-Portcullis-Deployment"), body)
		}
	}
	if !fellBack {
		t.Fatalf("no fallback after %d requests; statuses %v", len(statuses), statuses)
	}
	t.Logf("fallback after %d requests (statuses %v)", len(statuses), statuses)

	status, metrics := send(t, http.MethodGet, eu+"/metrics", "")
	if status != http.StatusOK || !strings.Contains(metrics, "\nportcullis_upstream_breaker_state{deployment=\"openai-eu\"} 2\n") {
		t.Fatalf("eu /metrics (status %d) does not show openai-eu's breaker open:\n%s", status, grepLines(metrics, "breaker_state"))
	}

	// The control plane shows it too, once the eu worker has reported (every 5 s).
	adminToken, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	healthURL := "http://" + addrs["PORTCULLIS_DEV_CONTROLPLANE_LISTEN"] + "/admin/v1/deployments/health"
	waitFor(t, 30*time.Second, "openai-eu open in "+healthURL, func() bool {
		return deploymentState(t, healthURL, strings.TrimSpace(string(adminToken)), "openai-eu") == "open"
	})

	resp, body := chat(t, eu, readToken(t, dataDir, "premium-app"), "gpt-4o")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Portcullis-Deployment") != "openai-us" || resp.Header.Get("X-Portcullis-Fallback") != "" {
		t.Fatalf("premium-app gpt-4o: status %d deployment %q fallback %q, want 200 from openai-us without fallback: %s",
			resp.StatusCode, resp.Header.Get("X-Portcullis-Deployment"), resp.Header.Get("X-Portcullis-Fallback"), body)
	}

	if status, body := send(t, http.MethodDelete, control, ""); status != http.StatusNoContent {
		t.Fatalf("DELETE /mock/fail: status %d: %s", status, body)
	}
	if status, body := send(t, http.MethodGet, control, ""); status != http.StatusOK || strings.TrimSpace(body) != `{"data":[]}` {
		t.Fatalf("GET /mock/fail after DELETE: status %d: %s", status, body)
	}
}

// deploymentState is deployment's summary state in the admin API's health answer
// at url, "" when it is not listed.
func deploymentState(t *testing.T, url, adminToken, deployment string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var health struct {
		Data []struct {
			Deployment string `json:"deployment"`
			State      string `json:"state"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&health); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %v", url, resp.StatusCode, err)
	}
	for _, d := range health.Data {
		if d.Deployment == deployment {
			return d.State
		}
	}
	return ""
}

func readToken(t *testing.T, dataDir, client string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "dev-tokens", client+".jwt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// chat sends a one-message chat completion for model to the data plane at base.
func chat(t *testing.T, base, token, model string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"Hello"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// send makes one request with body and returns the status and the body.
func send(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
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
