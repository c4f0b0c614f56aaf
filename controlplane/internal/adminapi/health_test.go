package adminapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/health"
)

func TestDeploymentHealth(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	fleet := health.Fleet{Workers: 2, Deployments: []health.DeploymentHealth{{
		Deployment: "openai-eu", State: "open",
		Workers: []health.WorkerHealth{
			{Worker: "w1", Region: "eu", Breaker: "open", ErrorRate: 0.75, Samples: 8, LatencyMS: 1840.2, ReportedAt: at, PolicyVersion: 4},
			{Worker: "w2", Region: "eu", Breaker: "closed", ErrorRate: 0, Samples: 3, ReportedAt: at, PolicyVersion: 4},
		},
	}}}
	tests := []struct {
		name  string
		fleet health.Fleet
		want  string
	}{
		{"no worker reports", health.Fleet{}, `{"data":[],"workers":0}`},
		{"two workers", fleet, `{"data":[{"deployment":"openai-eu","state":"open","workers":[` +
			`{"worker":"w1","region":"eu","breaker":"open","error_rate":0.75,"samples":8,"latency_ms":1840.2,"reported_at":"2030-01-02T03:04:05Z","policy_version":4},` +
			`{"worker":"w2","region":"eu","breaker":"closed","error_rate":0,"samples":3,"latency_ms":0,"reported_at":"2030-01-02T03:04:05Z","policy_version":4}]}],` +
			`"workers":2}`},
	}
	h := newHarness(t)
	// A real deployment exists, so a fall-through to /deployments/:key would answer it
	// or a 404, never the health body.
	h.fixture()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h.health.set(tc.fleet)
			r := h.must(http.StatusOK, http.MethodGet, "/admin/v1/deployments/health", "")
			if got := strings.TrimSpace(string(r.body)); !jsonEqual(t, got, tc.want) {
				t.Errorf("body = %s\nwant   %s", got, tc.want)
			}
		})
	}
}

func TestDeploymentHealthRoutes(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	tests := []struct {
		name, method, path string
		token              bool
		wantStatus         int
		wantCode           string
		wantAllow          string
	}{
		{"needs the admin token", http.MethodGet, "/admin/v1/deployments/health", false, http.StatusUnauthorized, "unauthorized", ""},
		{"POST is not allowed", http.MethodPost, "/admin/v1/deployments/health", true, http.StatusMethodNotAllowed, "method_not_allowed", "GET"},
		{"PUT finds no deployment", http.MethodPut, "/admin/v1/deployments/health", true, 0, "", ""},
		{"a deployment still reads", http.MethodGet, "/admin/v1/deployments/openai-eu", true, http.StatusOK, "", ""},
		{"the list still reads", http.MethodGet, "/admin/v1/deployments", true, http.StatusOK, "", ""},
		{"deeper paths are not found", http.MethodGet, "/admin/v1/deployments/health/openai-eu", true, http.StatusNotFound, "not_found", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r response
			if tc.token {
				r = h.do(tc.method, tc.path, "")
			} else {
				r = h.send(tc.method, tc.path, "")
			}
			if tc.wantStatus == 0 {
				// Whatever PUT answers, it must be an error, not a health body or a write.
				if r.status < 400 {
					t.Fatalf("status %d, want an error: %s", r.status, r.body)
				}
				return
			}
			if r.status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.status, tc.wantStatus, r.body)
			}
			if tc.wantCode != "" {
				if got := r.errorCode(t); got != tc.wantCode {
					t.Errorf("error code %q, want %q", got, tc.wantCode)
				}
			}
			if got := r.header.Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tc.wantAllow)
			}
		})
	}
}

func TestDeploymentNameHealthIsReserved(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	r := h.must(http.StatusUnprocessableEntity, http.MethodPost, "/admin/v1/deployments",
		`{"name":"health","provider":"openai","region":"eu","base_url":"http://127.0.0.1:9100/v1","key_source":"none"}`)
	if got := r.errorFields(t); len(got) != 1 || got[0] != "name" {
		t.Errorf("fields = %v, want [name]", got)
	}
	if !strings.Contains(string(r.body), "reserved") {
		t.Errorf("body %s does not say the name is reserved", r.body)
	}
	// Similar names are fine.
	h.must(http.StatusCreated, http.MethodPost, "/admin/v1/deployments",
		`{"name":"health-eu","provider":"openai","region":"eu","base_url":"http://127.0.0.1:9100/v1","key_source":"none"}`)
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal([]byte(a), &va); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal([]byte(b), &vb); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}
