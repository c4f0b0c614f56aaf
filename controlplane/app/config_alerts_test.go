package app

import (
	"io"
	"strings"
	"testing"
	"time"
)

// TestLoadConfigWebhookAdminURLAndPolicyLag: the keys of alert webhooks, the OpenAI
// admin URL and the policy lag alert are validated, each error naming its key.
func TestLoadConfigWebhookAdminURLAndPolicyLag(t *testing.T) {
	const db = "postgres://x@127.0.0.1/db"
	refused := []struct {
		name    string
		args    []string
		want    []string
		notWant []string
	}{
		{"a loopback webhook without allow-private",
			[]string{"--alert-webhook-url", "http://127.0.0.1:9000/hook?token=hush", "--alert-webhook-secret-file", "/s"},
			[]string{"PORTCULLIS_ALERT_WEBHOOK_URL=", "127.0.0.1", "PORTCULLIS_ALERT_WEBHOOK_ALLOW_PRIVATE=true"}, []string{"hush"}},
		{"a metadata-service webhook",
			[]string{"--alert-webhook-url", "http://169.254.169.254/latest", "--alert-webhook-secret-file", "/s"},
			[]string{"PORTCULLIS_ALERT_WEBHOOK_URL=", "private"}, nil},
		{"an IPv6 unique-local webhook",
			[]string{"--alert-webhook-url", "https://[fd00::5]/hook", "--alert-webhook-secret-file", "/s"},
			[]string{"PORTCULLIS_ALERT_WEBHOOK_URL=", "private"}, nil},
		{"a plain-http admin URL",
			[]string{"--openai-admin-url", "http://api.openai.com"},
			[]string{`PORTCULLIS_OPENAI_ADMIN_URL="http://api.openai.com": must be https`}, nil},
		{"an admin URL with credentials",
			[]string{"--openai-admin-url", "https://user:hunter2@api.openai.com"},
			[]string{"PORTCULLIS_OPENAI_ADMIN_URL=", "user info"}, []string{"hunter2"}},
		{"a policy lag alert too soon",
			[]string{"--policy-lag-alert-after", "500ms"},
			[]string{`PORTCULLIS_POLICY_LAG_ALERT_AFTER="500ms": must be between 1s and 24h`}, nil},
		{"a policy lag alert too late",
			[]string{"--policy-lag-alert-after", "25h"},
			[]string{`PORTCULLIS_POLICY_LAG_ALERT_AFTER="25h0m0s"`}, nil},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := LoadConfig(append([]string{"--database-url", db}, tt.args...), env(nil), io.Discard)
			if err == nil {
				t.Fatal("LoadConfig accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error leaks %q:\n%v", w, err)
				}
			}
		})
	}

	cfg, _, err := LoadConfig([]string{"--database-url", db}, env(map[string]string{
		"PORTCULLIS_ALERT_WEBHOOK_URL":           "http://127.0.0.1:9000/hook",
		"PORTCULLIS_ALERT_WEBHOOK_SECRET_FILE":   "/s",
		"PORTCULLIS_ALERT_WEBHOOK_ALLOW_PRIVATE": "true",
		"PORTCULLIS_OPENAI_ADMIN_URL":            "http://127.0.0.1:9100",
		"PORTCULLIS_POLICY_LAG_ALERT_AFTER":      "0",
	}), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if !cfg.AlertWebhookAllowPrivate || cfg.OpenAIAdminURL != "http://127.0.0.1:9100" || cfg.PolicyLagAlertAfter != 0 {
		t.Fatalf("config %+v", cfg)
	}
	for _, ok := range []string{"https://admin.openai.example/proxy", "http://localhost:9100"} {
		if _, _, err := LoadConfig([]string{"--database-url", db, "--openai-admin-url", ok, "--policy-lag-alert-after", time.Minute.String()}, env(nil), io.Discard); err != nil {
			t.Errorf("openai-admin-url %s: %v", ok, err)
		}
	}
}
