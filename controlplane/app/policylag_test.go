package app

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"

	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/shared/health"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestPolicyLagAlert: a worker whose health reports show a policy version behind the
// published one for longer than policy-lag-alert-after gets one policy_lag alert, in
// the alerts API and at the signed webhook, however many reports follow; a worker
// that keeps up gets none.
func TestPolicyLagAlert(t *testing.T) {
	secret := "policy-lag-webhook-secret"
	hooks := make(chan *http.Request, 8)
	bodies := make(chan []byte, 8)
	hook := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hooks <- r
		bodies <- b
	}))
	defer hook.Close()
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	a, cfg := startApp(t, func(c *Config) {
		c.PolicyLagAlertAfter = time.Second
		c.AlertWebhookURL, c.AlertWebhookSecretFile, c.AlertWebhookAllowPrivate = hook.URL, secretFile, true
	})
	token := admintest.Admin(t, "http://"+a.Addr(), cfg.DataDir)
	waitfor.That(t, "a published policy", func() bool { return a.PolicyVersion() > 0 })
	published := a.PolicyVersion()

	nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	send := func(worker string, version int64) {
		t.Helper()
		data, err := health.Encode(health.Report{Worker: worker, Region: "eu", PolicyVersion: version, At: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(natsnames.HealthSubject("eu", worker), data); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	type alertRow struct {
		ID       int64          `json:"id"`
		Kind     string         `json:"kind"`
		Severity string         `json:"severity"`
		Message  string         `json:"message"`
		Details  map[string]any `json:"details"`
	}
	lagAlerts := func() []alertRow {
		r := do(t, http.MethodGet, "http://"+a.Addr()+"/admin/v1/alerts", token, "")
		var list struct{ Data []alertRow }
		if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &list) != nil {
			t.Fatalf("GET /alerts: %d %s", r.status, r.body)
		}
		var out []alertRow
		for _, al := range list.Data {
			if al.Kind == KindPolicyLag {
				out = append(out, al)
			}
		}
		return out
	}

	// eu-stuck stays one version behind; eu-ok keeps up. Reports every 300 ms, for
	// well past the 1 s threshold.
	deadline := time.Now().Add(10 * time.Second)
	for len(lagAlerts()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no policy_lag alert within 10s")
		}
		send("eu-stuck", published-1)
		send("eu-ok", published)
		time.Sleep(300 * time.Millisecond)
	}
	for range 5 { // more reports at the same version: still one alert
		send("eu-stuck", published-1)
		time.Sleep(300 * time.Millisecond)
	}
	got := lagAlerts()
	if len(got) != 1 || got[0].Severity != "warning" || got[0].Details["worker"] != "eu-stuck" ||
		got[0].Details["policy_version"] != float64(published-1) || got[0].Details["published_version"] != float64(published) ||
		!strings.Contains(got[0].Message, "eu-stuck") {
		t.Fatalf("policy_lag alerts %+v, want one for eu-stuck at version %d of %d", got, published-1, published)
	}

	select {
	case r := <-hooks:
		body := <-bodies
		ts, _ := strconv.ParseInt(r.Header.Get(alerting.HeaderTimestamp), 10, 64)
		if !alerting.Verify([]byte(secret), ts, hook.URL, body, r.Header.Get(alerting.HeaderSignature)) ||
			!strings.Contains(string(body), `"kind":"policy_lag"`) || !strings.Contains(string(body), `"subject":"eu-stuck"`) {
			t.Fatalf("webhook %s, signature %q", body, r.Header.Get(alerting.HeaderSignature))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook within 10s")
	}
	select {
	case b := <-bodies:
		t.Fatalf("a second webhook: %s", b)
	case <-time.After(500 * time.Millisecond):
	}
}
