package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

func TestUsageAndAlertCommands(t *testing.T) {
	c := newCLI(t)
	steps := []struct {
		name       string
		args       []string
		wantCode   apierr.Code // "" means success
		wantStdout []string
	}{
		{name: "usage json", args: []string{"usage", "--group-by", "tenant", "--from", "2026-04-01T00:00:00Z", "--to", "2026-04-02T00:00:00Z"},
			wantStdout: []string{`"group_by": "tenant"`, `"data": []`}},
		{name: "usage csv", args: []string{"usage", "--group-by", "model", "--from", "2026-04-01T00:00:00Z", "--to", "2026-04-02T00:00:00Z", "--format", "csv"},
			wantStdout: []string{"model,requests,tokens_in,tokens_out,cost_usd,cost_usd_micros\n"}},
		{name: "usage bad group", args: []string{"usage", "--group-by", "region", "--from", "2026-04-01T00:00:00Z", "--to", "2026-04-02T00:00:00Z"},
			wantCode: apierr.ValidationFailed},
		{name: "seeded rules", args: []string{"anomaly-rules", "list"},
			wantStdout: []string{`"name": "new_source_ip"`, `"name": "token_spike"`, `"action": "alert_and_throttle"`}},
		{name: "alerts list", args: []string{"alerts", "list", "--unacknowledged"}, wantStdout: []string{`"data": []`}},
		{name: "ack unknown", args: []string{"alerts", "ack", "42"}, wantCode: apierr.NotFound},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, errOut, err := c.run(s.args...)
			if s.wantCode == "" {
				if err != nil {
					t.Fatalf("%v\nstderr: %s", err, errOut)
				}
				for _, w := range s.wantStdout {
					if !strings.Contains(out, w) {
						t.Errorf("stdout %s lacks %q", out, w)
					}
				}
				return
			}
			if apiErr, ok := errors.AsType[*APIError](err); !ok || apiErr.Code != s.wantCode {
				t.Fatalf("err = %v, want API error %s", err, s.wantCode)
			}
		})
	}
	if _, _, err := c.run("usage", "--group-by", "client"); !errors.Is(err, ErrUsage) {
		t.Fatalf("usage without a range: %v", err)
	}
}
