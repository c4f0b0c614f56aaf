package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/dataplane/internal/limits"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestEgressAllowlistIsRequired: a worker with an empty PORTCULLIS_EGRESS_ALLOW_HOSTS
// does not load or start unless PORTCULLIS_DEV_ALLOW_ANY_EGRESS is on, and then it
// warns at start.
func TestEgressAllowlistIsRequired(t *testing.T) {
	vars := with(map[string]string{"PORTCULLIS_EGRESS_ALLOW_HOSTS": ""})
	_, err := app.LoadConfig(nil, getenv(vars), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PORTCULLIS_EGRESS_ALLOW_HOSTS") || !strings.Contains(err.Error(), "PORTCULLIS_DEV_ALLOW_ANY_EGRESS") {
		t.Fatalf("LoadConfig without an egress allowlist: %v", err)
	}
	vars["PORTCULLIS_DEV_ALLOW_ANY_EGRESS"] = "true"
	if cfg, err := app.LoadConfig(nil, getenv(vars), io.Discard); err != nil || !cfg.DevAllowAnyEgress {
		t.Fatalf("LoadConfig with the dev flag: %+v, %v", cfg, err)
	}

	// A Config built by hand is held to the same rule.
	e := newEnv(t, envOptions{noBucket: true})
	cfg := app.Config{Region: "eu", Listen: "127.0.0.1:0", NATSURL: e.natsURL, JWTIssuer: e.iss.Name, JWKSURL: e.iss.JWKSURL,
		AuditSpoolDir: t.TempDir(), WorkerID: "no-egress", PolicyPublicKeys: policyPublicKeys}
	if a, err := app.Start(context.Background(), cfg, logging.New(io.Discard, "info")); err == nil {
		_ = a.Stop(context.Background())
		t.Fatal("a worker without an egress allowlist started")
	} else if !strings.Contains(err.Error(), "PORTCULLIS_EGRESS_ALLOW_HOSTS") {
		t.Fatalf("refusal: %v", err)
	}
	logs := &logtest.Buffer{}
	cfg.DevAllowAnyEgress, cfg.WorkerID = true, "any-egress"
	a, err := app.Start(context.Background(), cfg, logging.New(logs, "info"))
	if err != nil {
		t.Fatalf("start with the dev flag: %v", err)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "PORTCULLIS_DEV_ALLOW_ANY_EGRESS is on") {
		t.Fatalf("no warning at start:\n%s", logs.String())
	}
}

// TestKeySettingsAreValidated: a relative PORTCULLIS_KEY_DIR and an out-of-range
// PORTCULLIS_POLICY_MAX_AGE are refused, naming the key.
func TestKeySettingsAreValidated(t *testing.T) {
	_, err := app.LoadConfig(nil, getenv(with(map[string]string{
		"PORTCULLIS_KEY_DIR": "keys", "PORTCULLIS_POLICY_MAX_AGE": "1s",
	})), io.Discard)
	for _, want := range []string{`PORTCULLIS_KEY_DIR="keys"`, `PORTCULLIS_POLICY_MAX_AGE="1s"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	cfg, err := app.LoadConfig(nil, getenv(with(map[string]string{
		"PORTCULLIS_KEY_DIR": "/etc/portcullis/keys", "PORTCULLIS_POLICY_MAX_AGE": "2m", "PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE": "true",
	})), io.Discard)
	if err != nil || cfg.KeyDir != "/etc/portcullis/keys" || cfg.PolicyMaxAge != 2*time.Minute || !cfg.DevAllowAnyKeyFile {
		t.Fatalf("LoadConfig: %+v, %v", cfg, err)
	}
}

// TestFileKeysOutsideTheKeyDirectoryAreNotRead: a deployment whose key file is not
// under the worker's PORTCULLIS_KEY_DIR, or that group or others can read, answers
// 503 upstream_key_unavailable, with a log line naming the setting (or the mode),
// and nothing reaches the upstream.
func TestFileKeysOutsideTheKeyDirectoryAreNotRead(t *testing.T) {
	keyDir := t.TempDir()
	e := newEnv(t, envOptions{configure: func(c *app.Config) { c.KeyDir = keyDir }})
	resp := e.do(t, http.MethodPost, "/v1/chat/completions", e.token(t, "premium-app"),
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": "outside-key-dir"})
	openAIError(t, resp, http.StatusServiceUnavailable, apierr.UpstreamKey)
	line := accessLine(t, e.logs, "outside-key-dir")
	if cause, _ := line["error"].(string); !strings.Contains(cause, "PORTCULLIS_KEY_DIR") || !strings.Contains(cause, e.keyPath) {
		t.Fatalf("log line error %q does not name PORTCULLIS_KEY_DIR and the file", cause)
	}
	if !strings.Contains(e.logs.String(), "deployment's key file is refused") {
		t.Fatal("no log line when the deployment's key source was built")
	}
	if n := len(e.spies["eu"].seen()) + len(e.spies["us"].seen()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
	if strings.Contains(e.logs.String(), upstreamKey) {
		t.Fatal("the key reached the log")
	}
}

func TestFileKeysOthersCanReadAreNotRead(t *testing.T) {
	e := newEnv(t, envOptions{})
	if err := os.Chmod(e.keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	resp := e.do(t, http.MethodPost, "/v1/chat/completions", e.token(t, "premium-app"),
		`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"X-Request-Id": "readable-key"})
	openAIError(t, resp, http.StatusServiceUnavailable, apierr.UpstreamKey)
	if cause, _ := accessLine(t, e.logs, "readable-key")["error"].(string); !strings.Contains(cause, "0644") || !strings.Contains(cause, "group or others") {
		t.Fatalf("log line error %q does not say the file is readable by others", cause)
	}
	if n := len(e.spies["eu"].seen()) + len(e.spies["us"].seen()); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
}

// TestPolicyMaxAge: /readyz stays ready while the worker keeps confirming that its
// policy is the newest in PC_POLICY, even when the policy does not change for longer
// than PORTCULLIS_POLICY_MAX_AGE; cut off from NATS, it turns unready with 503
// policy_too_old once the policy is older than that, keeps serving requests, and is
// ready again once NATS is back. portcullis_dataplane_policy_age_seconds follows.
func TestPolicyMaxAge(t *testing.T) {
	const maxAge = 3 * time.Second
	e := newEnv(t, envOptions{configure: func(c *app.Config) {
		c.PolicyMaxAge = maxAge
		c.LimitsFailPolicy = limits.FailOpen // so that /readyz speaks of the policy, not of the limits, without NATS
	}})
	readyz := func() (int, map[string]any) {
		t.Helper()
		status, body := get(t, e.client, e.base+"/readyz")
		var v map[string]any
		_ = json.Unmarshal([]byte(body), &v)
		return status, v
	}
	// An unchanged policy, with NATS up, stays ready past the max age.
	deadline := time.Now().Add(2*maxAge + time.Second)
	for time.Now().Before(deadline) {
		if status, body := readyz(); status != http.StatusOK {
			t.Fatalf("/readyz = %d %v while the policy is current", status, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if age := policyAge(t, e); age < 0 || age > maxAge.Seconds() {
		t.Fatalf("policy age %v s with NATS up, want at most %v", age, maxAge)
	}

	e.nats.Stop()
	waitfor.That(t, "/readyz to answer 503 policy_too_old", func() bool {
		status, body := readyz()
		errBody, _ := body["error"].(map[string]any)
		return status == http.StatusServiceUnavailable && errBody["code"] == string(apierr.PolicyTooOld)
	})
	if age := policyAge(t, e); age <= maxAge.Seconds() {
		t.Fatalf("policy age %v s once unready, want more than %v", age, maxAge)
	}
	// Requests that still reach it are served with the policy it has.
	if resp := e.chat(t, e.token(t, "premium-app"), "gpt-4o"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a request while the policy is too old: %d", resp.StatusCode)
	}

	e.nats.Restart()
	waitfor.That(t, "/readyz to be ready again", func() bool { status, _ := readyz(); return status == http.StatusOK })
}

// TestPolicyRejectedSnapshotDoesNotConfirm: a newer value in PC_POLICY that the
// worker refuses (here unsigned garbage) leaves it holding an outdated policy, and
// its age grows past the max age although NATS is up.
func TestPolicyRejectedSnapshotDoesNotConfirm(t *testing.T) {
	const maxAge = 3 * time.Second
	e := newEnv(t, envOptions{configure: func(c *app.Config) { c.PolicyMaxAge = maxAge }})
	e.putRaw(t, []byte("not a snapshot"))
	waitfor.That(t, "/readyz to answer 503 policy_too_old", func() bool {
		status, body := get(t, e.client, e.base+"/readyz")
		return status == http.StatusServiceUnavailable && strings.Contains(body, string(apierr.PolicyTooOld))
	})
	e.publish(t, e.snapshot())
	waitfor.That(t, "/readyz to be ready again", func() bool { status, _ := get(t, e.client, e.base+"/readyz"); return status == http.StatusOK })
}

var policyAgeLine = regexp.MustCompile(`(?m)^portcullis_dataplane_policy_age_seconds ([0-9.e+-]+)$`)

// policyAge is the worker's portcullis_dataplane_policy_age_seconds.
func policyAge(t *testing.T, e *env) float64 {
	t.Helper()
	_, body := e.getMetricsListener(t, "/metrics")
	m := policyAgeLine.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no portcullis_dataplane_policy_age_seconds in the metrics:\n%s", body)
	}
	if !strings.Contains(body, "portcullis_dataplane_policy_generated_timestamp_seconds ") {
		t.Fatal("no portcullis_dataplane_policy_generated_timestamp_seconds in the metrics")
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestNATSURLCredentialsAreNotShown: a configuration error about the NATS URL shows
// it without its user info.
func TestNATSURLCredentialsAreNotShown(t *testing.T) {
	_, err := app.LoadConfig(nil, getenv(with(map[string]string{"PORTCULLIS_NATS_URL": "http://portcullis:s3cret-pw@nats.internal:4222"})), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PORTCULLIS_NATS_URL") || !strings.Contains(err.Error(), "nats.internal:4222") {
		t.Fatalf("LoadConfig with a bad NATS URL: %v", err)
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Fatalf("the error shows the NATS password: %v", err)
	}
}

// TestAuditStreamIsAskedForUntilCreated: a data plane may not create its audit
// stream; it asks the control plane. When none answers at start, the events of its
// requests wait in the spool and the worker keeps asking; once a control plane
// answers, the stream exists and the events reach it.
func TestAuditStreamIsAskedForUntilCreated(t *testing.T) {
	e := newEnv(t, envOptions{noStreamService: true})
	if r := e.chat(t, e.token(t, "premium-app"), "gpt-4o"); r.StatusCode != http.StatusOK {
		t.Fatalf("chat = %d", r.StatusCode)
	}
	ctx := context.Background()
	if _, err := e.js.Stream(ctx, natsnames.AuditStream("eu")); err == nil {
		t.Fatal("the audit stream exists before a control plane created it")
	}
	if _, err := audit.ServeStreamCreate(e.nats.Conn, e.js, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitfor.Within(t, 10*time.Second, "the audit stream created and the spooled event in it", func() bool {
		st, err := e.js.Stream(ctx, natsnames.AuditStream("eu"))
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs >= 1
	})
}
