package app

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"

	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/shared/health"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestDeploymentHealthFromWorkerReports publishes worker health reports on the
// control plane's NATS, as data-plane workers do, and reads them back through the
// admin API and /metrics.
func TestDeploymentHealthFromWorkerReports(t *testing.T) {
	a, cfg := startApp(t)
	base := "http://" + a.Addr()
	token := admintest.Admin(t, "http://"+a.Addr(), cfg.DataDir)

	nc, err := nats.Connect(a.NATSURL(), asControlPlane(t, a))
	if err != nil {
		t.Fatalf("connect to %s: %v", a.NATSURL(), err)
	}
	defer nc.Close()
	publish := func(subject string, data []byte) {
		t.Helper()
		if err := nc.Publish(subject, data); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []health.Report{
		{Worker: "eu-1", Region: "eu", PolicyVersion: 3, At: time.Now(),
			Deployments: []health.Deployment{{Name: "openai-eu", Breaker: "closed", Samples: 5}}},
		{Worker: "eu-2", Region: "eu", PolicyVersion: 3, At: time.Now(),
			Deployments: []health.Deployment{{Name: "openai-eu", Breaker: "open", ErrorRate: 1, Samples: 6}}},
	} {
		data, err := health.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		publish(natsnames.HealthSubject(r.Region, r.Worker), data)
	}
	publish(natsnames.HealthSubject("eu", "eu-3"), []byte(`{"version":99,"worker":"eu-3"}`))

	type answer struct {
		Data []struct {
			Deployment string `json:"deployment"`
			State      string `json:"state"`
			Workers    []struct {
				Worker string `json:"worker"`
			} `json:"workers"`
		} `json:"data"`
		Workers int `json:"workers"`
	}
	var got answer
	waitfor.That(t, "both workers in /admin/v1/deployments/health", func() bool {
		r := do(t, "GET", base+"/admin/v1/deployments/health", token, "")
		if r.status != http.StatusOK {
			t.Fatalf("GET /admin/v1/deployments/health = %d %s", r.status, r.body)
		}
		got = answer{}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatalf("body %s: %v", r.body, err)
		}
		return got.Workers == 2
	})
	if len(got.Data) != 1 || got.Data[0].Deployment != "openai-eu" || got.Data[0].State != "open" ||
		len(got.Data[0].Workers) != 2 || got.Data[0].Workers[0].Worker != "eu-1" {
		t.Fatalf("health = %+v, want openai-eu open as seen by eu-1 and eu-2", got)
	}

	waitfor.That(t, "the rejected report in /metrics", func() bool {
		return strings.Contains(scrape(t, a),
			`portcullis_controlplane_health_reports_total{result="rejected"} 1`)
	})
	if m := scrape(t, a); !strings.Contains(m, `portcullis_controlplane_health_reports_total{result="ok"} 2`) {
		t.Errorf("/metrics lacks 2 ok health reports")
	}
	if r := do(t, "GET", base+"/admin/v1/deployments/health", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("without a token: %d, want 401", r.status)
	}
}
