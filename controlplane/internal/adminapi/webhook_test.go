package adminapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
)

// TestAnomalyRuleWebhookToAPrivateAddress: a rule's webhook_url whose host is a
// private, loopback or link-local IP is refused (422 naming webhook_url) unless the
// API allows private webhooks; a host name is accepted (it is checked when dialled).
func TestAnomalyRuleWebhookToAPrivateAddress(t *testing.T) {
	h := newHarness(t)
	for i, u := range []string{"http://127.0.0.1:9000/hook", "http://169.254.169.254/latest", "https://10.0.0.7/x", "https://[fd00::1]/x"} {
		r := h.do(http.MethodPost, "/admin/v1/anomaly-rules",
			`{"name":"private-`+string(rune('a'+i))+`","kind":"token_spike","webhook_url":"`+u+`"}`)
		if r.status != http.StatusUnprocessableEntity || !slices.Contains(r.errorFields(t), "webhook_url") ||
			!strings.Contains(string(r.body), "alert-webhook-allow-private") {
			t.Fatalf("%s: %d %s; want 422 naming webhook_url", u, r.status, r.body)
		}
	}
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/anomaly-rules",
		`{"name":"by-name","kind":"token_spike","webhook_url":"https://hooks.example/x"}`)

	allowed := newHarness(t, func(a *adminapi.API) { a.AllowPrivateWebhooks() })
	allowed.must(http.StatusCreated, http.MethodPost, "/admin/v1/anomaly-rules",
		`{"name":"loopback","kind":"token_spike","webhook_url":"http://127.0.0.1:9000/hook"}`)
}
