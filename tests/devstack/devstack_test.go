// Package devstack tests `make run` (tests/cmd/portcullis-dev, on package tests/stack)
// as a developer uses it: make builds the binaries, the dev command starts a
// Postgres-backed control plane, embedded NATS, two data planes and the mock upstream,
// seeds the demo tenant and prints a curl; a
// request with the minted token is served; the seed's analytics tier is served and
// limited as the seed writes it; a failure injected into one deployment through the
// mock's control API sends every request to the fallback, the first one included;
// Ctrl-C stops everything it started. A second run takes the keys from a real
// Vault and rotates and revokes them under traffic (vault_test.go).
package devstack

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/natstest"

	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// freeAddr returns a loopback address with a port that was free a moment ago. The
// port is below the kernel's range of ephemeral ports when it can be, so that no
// outgoing connection (the stack makes many on loopback while it starts) takes it
// before the stack listens on it; taken holds the ports already handed out.
func freeAddr(t *testing.T, taken map[string]bool) string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	for range 1000 {
		if low <= 10000 {
			break
		}
		addr := "127.0.0.1:" + strconv.Itoa(10000+rand.IntN(low-10000))
		if taken[addr] {
			continue
		}
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			taken[addr] = true
			return addr
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken[l.Addr().String()] = true
	return l.Addr().String()
}

// devstack is one run of make run on free ports, with its data directory and Postgres
// database of its own.
type devstack struct {
	t       *testing.T
	root    string
	dataDir string
	addrs   map[string]string // listen address by environment variable
	out     *logtest.Buffer   // what make run printed
	pid     int
	exited  chan error
	stopped bool
}

// startDevstack runs make run with env added to the environment and waits until it
// says the stack is up and has printed its last example. The test's Vault settings
// are dropped from the inherited environment, so env alone decides where keys come
// from. Cleanup stops the stack if the test did not.
func startDevstack(t *testing.T, env ...string) *devstack {
	t.Helper()
	// An enclosing make's flags (make test) are not this make's business.
	return launchDevstack(t, []string{"make", "--no-print-directory", "run"}, append([]string{"MAKEFLAGS=", "MFLAGS=", "MAKELEVEL="}, env...)...)
}

// launchDevstack is startDevstack with the command line argv, run from the repository
// root in a process group of its own.
func launchDevstack(t *testing.T, argv []string, env ...string) *devstack {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	d := &devstack{t: t, root: root, dataDir: t.TempDir(), out: &logtest.Buffer{}, exited: make(chan error, 1)}
	taken := map[string]bool{}
	d.addrs = map[string]string{
		"PORTCULLIS_DEV_CONTROLPLANE_LISTEN": freeAddr(t, taken),
		"PORTCULLIS_DEV_EU_LISTEN":           freeAddr(t, taken),
		"PORTCULLIS_DEV_US_LISTEN":           freeAddr(t, taken),
		"PORTCULLIS_MOCK_LISTEN":             freeAddr(t, taken),
		"PORTCULLIS_MOCK_CONTROL_LISTEN":     freeAddr(t, taken),
		"PORTCULLIS_EMBEDDED_NATS_LISTEN":    freeAddr(t, taken),
	}
	for _, k := range []string{"PORTCULLIS_DEV_CONTROLPLANE_METRICS_LISTEN", "PORTCULLIS_DEV_EU_METRICS_LISTEN", "PORTCULLIS_DEV_US_METRICS_LISTEN"} {
		d.addrs[k] = freeAddr(t, taken)
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
			// The dev command stops what it started (its child processes lead their own
			// groups); SIGKILL is the last resort for make and the command.
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
		t.Fatalf("make run exited before the stack was up: %v", err)
	case <-time.After(8 * time.Minute):
		t.Fatal("dev stack not up after 8 minutes")
	}
	// Wait for the printed curls: the chat completion, then the control API's example,
	// the last thing make run says.
	waitfor.Within(t, 10*time.Second, "printed curls", func() bool {
		return strings.Contains(d.out.String(), `"content":"Hello"}]}'`) && strings.Contains(d.out.String(), `"for_seconds":60}'`)
	})
	return d
}

// url is the base URL of the listener the environment variable key configures.
func (d *devstack) url(key string) string { return "http://" + d.addrs[key] }

// stop sends Ctrl-C and checks that everything make run started has stopped.
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
		t.Fatal("make run still running 60 s after Ctrl-C")
	}
	for name, addr := range d.addrs {
		waitfor.Within(t, 15*time.Second, name+" closed", func() bool {
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

	// The request the printed curl makes, with the token make run minted.
	token := readToken(t, d.dataDir, "moltbot-agent-07")
	resp, body := chat(t, d.url("PORTCULLIS_DEV_EU_LISTEN"), token, "gpt-4o-mini")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("x-portcullis-deployment") != "openai-eu" {
		t.Fatalf("eu: status %d deployment %q: %s", resp.StatusCode, resp.Header.Get("x-portcullis-deployment"), body)
	}
	// moltbot-agent-07 has residency eu: the us worker refuses it at the door and
	// names the eu data plane.
	resp, body = chat(t, d.url("PORTCULLIS_DEV_US_LISTEN"), token, "gpt-4o-mini")
	if resp.StatusCode != http.StatusMisdirectedRequest || !strings.Contains(body, `"code":"wrong_region"`) ||
		!strings.Contains(body, d.url("PORTCULLIS_DEV_EU_LISTEN")) {
		t.Fatalf("us: status %d: %s, want 421 wrong_region naming %s", resp.StatusCode, body, d.url("PORTCULLIS_DEV_EU_LISTEN"))
	}
	if strings.Contains(printed, token) {
		t.Fatal("make run printed a token")
	}

	residencyEndpoints(t, d)
	natsNeedsCredentials(t, d)
	analyticsTier(t, d)
	failOver(t, d.addrs, d.dataDir, printed)
	d.stop()
}

// natsNeedsCredentials checks that make run's nats-server refuses a client without
// credentials, and takes the read-only ops credentials make run leaves in the data
// directory (without letting them write the policy).
func natsNeedsCredentials(t *testing.T, d *devstack) {
	t.Helper()
	url := "nats://" + d.addrs["PORTCULLIS_EMBEDDED_NATS_LISTEN"]
	if nc, err := nats.Connect(url, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("make run's nats-server accepted a client without credentials")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect without credentials: %v, want an authorization error", err)
	}
	errs := natstest.NewErrors()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second),
		nats.UserCredentials(filepath.Join(d.dataDir, "nats-auth", "ops.creds")), errs.Handler())
	if err != nil {
		t.Fatalf("connect with make run's ops credentials: %v", err)
	}
	defer nc.Close()
	if err := nc.Publish("$KV.PC_POLICY.snapshot", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	errs.Refused(t, "ops writing the policy", "$KV.PC_POLICY.snapshot")
}

// residencyEndpoints checks that the seed named each data plane, on the port the
// dev stack gave it, as the endpoint of its region's residency rule.
func residencyEndpoints(t *testing.T, d *devstack) {
	t.Helper()
	admin, err := os.ReadFile(filepath.Join(d.dataDir, "dev-admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range []struct{ name, listen string }{{"eu", "PORTCULLIS_DEV_EU_LISTEN"}, {"us", "PORTCULLIS_DEV_US_LISTEN"}} {
		req, err := http.NewRequest(http.MethodGet, d.url("PORTCULLIS_DEV_CONTROLPLANE_LISTEN")+"/admin/v1/residency-rules/"+rule.name, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			EndpointURL string `json:"endpoint_url"`
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || got.EndpointURL != d.url(rule.listen) {
			t.Fatalf("residency rule %s: status %d, endpoint_url %q (%v), want %q", rule.name, resp.StatusCode, got.EndpointURL, err, d.url(rule.listen))
		}
	}
}

// analyticsTier checks the seed's service_account_analytics tier as the seed writes
// it (allowed_models ["gpt-4o-mini"], allowed_operations ["completion"], 30 requests
// a minute): its chat completions are served, embeddings and gpt-4o are refused, and
// of 60 chat requests, alternating between the two data planes, each minute window
// admits exactly its first 30.
func analyticsTier(t *testing.T, d *devstack) {
	t.Helper()
	token := readToken(t, d.dataDir, "analytics-svc")
	workers := []string{d.url("PORTCULLIS_DEV_EU_LISTEN"), d.url("PORTCULLIS_DEV_US_LISTEN")}
	for _, c := range []struct {
		name, path, body, code string
		status                 int
	}{
		{"embeddings", "/v1/embeddings", `{"model":"gpt-4o-mini","input":"hi"}`, "operation_not_allowed", http.StatusForbidden},
		{"gpt-4o", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, "model_not_allowed", http.StatusForbidden},
	} {
		resp, body := post(t, workers[0]+c.path, token, c.body)
		if resp.StatusCode != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Fatalf("analytics-svc %s: status %d: %s, want %d %s", c.name, resp.StatusCode, body, c.status, c.code)
		}
	}
	// The minute window is a UTC minute. The 60 take well under a second, but may
	// straddle the turn of a minute: each answer's X-Ratelimit-Reset-Requests says
	// which window counted it (the one ending at receipt + reset), and each window
	// admits its first 30, so nothing waits for the wall clock.
	type window struct{ sent, admitted int }
	windows := map[time.Time]*window{}
	for i := range 60 {
		resp, body := chat(t, workers[i%2], token, "gpt-4o-mini")
		reset, err := time.ParseDuration(resp.Header.Get("X-Ratelimit-Reset-Requests"))
		if err != nil {
			t.Fatalf("request %d: X-Ratelimit-Reset-Requests %q: %v", i, resp.Header.Get("X-Ratelimit-Reset-Requests"), err)
		}
		end := time.Now().Add(reset).Round(time.Minute)
		if windows[end] == nil {
			windows[end] = &window{}
		}
		w := windows[end]
		w.sent++
		switch resp.StatusCode {
		case http.StatusOK:
			w.admitted++
		case http.StatusTooManyRequests:
			if !strings.Contains(body, `"type":"requests"`) {
				t.Fatalf("request %d: 429 not for the request limit: %s", i, body)
			}
		default:
			t.Fatalf("request %d to %s: status %d: %s", i, workers[i%2], resp.StatusCode, body)
		}
	}
	if len(windows) > 2 {
		t.Fatalf("60 requests counted in %d minute windows", len(windows))
	}
	for end, w := range windows {
		if want := min(w.sent, 30); w.admitted != want {
			t.Fatalf("analytics-svc, 30 requests a minute: the window ending %s admitted %d of %d over both data planes, want %d",
				end.Format(time.TimeOnly), w.admitted, w.sent, want)
		}
	}
}

// failOver makes openai-eu fail through the mock's control API, as the summary
// shows, and checks what a user is told to watch: moltbot-agent-07 (residency eu,
// tier default: gpt-4o-mini only, served by openai-eu alone) gets every request
// answered by the fallback llama3-8b on ollama-eu, the first one included, while the
// eu worker's breaker for openai-eu opens;
// and premium-app (residency global: no restriction) keeps gpt-4o on openai-us,
// which the failure spares.
func failOver(t *testing.T, addrs map[string]string, dataDir, printed string) {
	t.Helper()
	control := "http://" + addrs["PORTCULLIS_MOCK_CONTROL_LISTEN"] + "/mock/fail"
	eu := "http://" + addrs["PORTCULLIS_DEV_EU_LISTEN"]
	us := "http://" + addrs["PORTCULLIS_DEV_US_LISTEN"]
	if !strings.Contains(printed, "curl -s -XPOST "+control+" -d '{") {
		t.Fatalf("no example of the control API in:\n%s", printed)
	}
	status, body := send(t, http.MethodPost, control, `{"deployment":"openai-eu","mode":"5xx","for_seconds":120}`)
	if status != http.StatusOK || !strings.Contains(body, `"mode":"5xx"`) {
		t.Fatalf("POST /mock/fail: status %d: %s", status, body)
	}

	moltbot := readToken(t, dataDir, "moltbot-agent-07")
	for i := range 20 {
		worker := eu // its residency's only door
		resp, body := chat(t, worker, moltbot, "gpt-4o-mini")
		got, dep := resp.Header.Get("X-Portcullis-Fallback"), resp.Header.Get("X-Portcullis-Deployment")
		if resp.StatusCode != http.StatusOK || got != "llama3-8b" || dep != "ollama-eu" {
			t.Fatalf("request %d to %s: status %d fallback %q deployment %q, want 200 from llama3-8b on ollama-eu: %s",
				i, worker, resp.StatusCode, got, dep, body)
		}
	}

	// The eu worker now routes around openai-eu before trying it: its breaker is open, or
	// (after the earlier requests it served well) its error rate is above 0.1. The
	// metrics are on each plane's metrics listener, as the summary says, and not on
	// its API port.
	euMetrics := "http://" + addrs["PORTCULLIS_DEV_EU_METRICS_LISTEN"] + "/metrics"
	for _, url := range []string{euMetrics, "http://" + addrs["PORTCULLIS_DEV_US_METRICS_LISTEN"] + "/metrics",
		"http://" + addrs["PORTCULLIS_DEV_CONTROLPLANE_METRICS_LISTEN"] + "/metrics"} {
		if !strings.Contains(printed, url) {
			t.Errorf("the summary does not print the metrics address %s:\n%s", url, printed)
		}
	}
	for _, api := range []string{eu, us, "http://" + addrs["PORTCULLIS_DEV_CONTROLPLANE_LISTEN"]} {
		if status, _ := send(t, http.MethodGet, api+"/metrics", ""); status != http.StatusNotFound {
			t.Errorf("%s/metrics answers %d, want 404: the metrics are on the metrics listener only", api, status)
		}
	}
	status, metrics := send(t, http.MethodGet, euMetrics, "")
	breakerOpen := strings.Contains(metrics, "\nportcullis_upstream_breaker_state{deployment=\"openai-eu\"} 2\n")
	if status != http.StatusOK || !breakerOpen && metricValue(metrics, `portcullis_upstream_error_rate{deployment="openai-eu"}`) <= 0.1 {
		t.Fatalf("eu /metrics (status %d) shows openai-eu neither open nor above the error rate:\n%s", status, grepLines(metrics, "upstream"))
	}

	// The control plane shows it too, once the eu worker has reported (every 5 s).
	adminToken, err := os.ReadFile(filepath.Join(dataDir, "dev-admin-token"))
	if err != nil {
		t.Fatal(err)
	}
	healthURL := "http://" + addrs["PORTCULLIS_DEV_CONTROLPLANE_LISTEN"] + "/admin/v1/deployments/health"
	waitfor.Within(t, 30*time.Second, "openai-eu failing in "+healthURL, func() bool {
		state, errorRate := deploymentState(t, healthURL, strings.TrimSpace(string(adminToken)), "openai-eu")
		return state == "open" || errorRate > 0.1
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

// metricValue is the value of the sample named series (name and labels, as printed)
// in the Prometheus text metrics, -1 when there is none.
func metricValue(metrics, series string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// deploymentState is deployment's summary state in the admin API's health answer
// at url ("" when it is not listed), and the highest error rate a worker reports
// for it.
func deploymentState(t *testing.T, url, adminToken, deployment string) (string, float64) {
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
			Workers    []struct {
				ErrorRate float64 `json:"error_rate"`
			} `json:"workers"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&health); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %v", url, resp.StatusCode, err)
	}
	for _, d := range health.Data {
		if d.Deployment == deployment {
			rate := 0.0
			for _, w := range d.Workers {
				rate = max(rate, w.ErrorRate)
			}
			return d.State, rate
		}
	}
	return "", 0
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
	return post(t, base+"/v1/chat/completions", token, `{"model":"`+model+`","messages":[{"role":"user","content":"Hello"}]}`)
}

// post sends body to url with token and returns the response and its body.
func post(t *testing.T, url, token, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
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
