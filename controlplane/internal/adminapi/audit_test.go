package adminapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/export"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/audit"
)

var auditT0 = time.Date(2026, 4, 14, 20, 0, 0, 0, time.UTC)

// archive stores n events of region, one a second from auditT0, in batches of 500.
func (h *harness) archive(region string, n int) {
	h.t.Helper()
	var batch []store.AuditEvent
	flush := func() {
		if _, err := h.st.AppendAudit(context.Background(), region, batch); err != nil {
			h.t.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := range n {
		e := audit.Event{TS: auditT0.Add(time.Duration(i) * time.Second), RequestID: fmt.Sprintf("%s-%d", region, i),
			Region: region, ClientID: fmt.Sprintf("client-%d", i%5), Operation: "chat", Model: "gpt-4o", Status: 200,
			TokensIn: int64(i), Headers: map[string]string{"x-request-id": fmt.Sprint(i)}}
		b, err := chain.Canonical(e)
		if err != nil {
			h.t.Fatal(err)
		}
		batch = append(batch, store.AuditEvent{Event: e, JSON: b})
		if len(batch) == 500 {
			flush()
		}
	}
	flush()
}

func exportPath(params ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	return "/admin/v1/audit/export?" + q.Encode()
}

func TestAuditExportStreamsVerifiableRegionalChains(t *testing.T) {
	h := newHarness(t)
	h.archive("eu", 3000)
	h.archive("us", 400)
	from, to := auditT0.Format(time.RFC3339), auditT0.Add(24*time.Hour).Format(time.RFC3339)
	tests := []struct {
		name        string
		params      []string
		contentType string
		rows        int64
		reachesHead bool
	}{
		{"eu ndjson", []string{"region", "eu", "from", from, "to", to}, "application/x-ndjson", 3000, true},
		{"eu csv", []string{"region", "eu", "from", from, "to", to, "format", "csv"}, "text/csv; charset=utf-8", 3000, true},
		{"us", []string{"region", "us", "from", from, "to", to}, "application/x-ndjson", 400, true},
		{"eu, one client", []string{"region", "eu", "from", from, "to", to, "client", "client-3"}, "application/x-ndjson", 600, false},
		// Events run 3000 s from auditT0: a range starting 600 s in holds the last 2400.
		{"eu, from 10 minutes in", []string{"region", "eu", "from", auditT0.Add(10 * time.Minute).Format(time.RFC3339),
			"to", auditT0.Add(70 * time.Minute).Format(time.RFC3339), "format", "csv"}, "text/csv; charset=utf-8", 2400, true},
		{"eu, ten minutes", []string{"region", "eu", "from", auditT0.Add(10 * time.Minute).Format(time.RFC3339),
			"to", auditT0.Add(20 * time.Minute).Format(time.RFC3339)}, "application/x-ndjson", 600, false},
		{"a region without events", []string{"region", "ap", "from", from, "to", to}, "application/x-ndjson", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.must(http.StatusOK, http.MethodGet, exportPath(tc.params...), "")
			if got := r.header.Get("Content-Type"); got != tc.contentType {
				t.Fatalf("Content-Type %q", got)
			}
			if r.header.Get("Content-Length") != "" || !strings.HasPrefix(r.header.Get("Content-Disposition"), "attachment;") {
				t.Fatalf("not streamed as a download: %v", r.header)
			}
			sum, err := export.Verify(bytes.NewReader(r.body))
			if err != nil {
				t.Fatalf("the export does not verify: %v", err)
			}
			region := tc.params[1]
			if sum.Head.Rows != tc.rows || sum.ReachesHead != tc.reachesHead || sum.Head.Region != region {
				t.Fatalf("summary %+v", sum)
			}
			if other := map[string]string{"eu": `"region":"us"`, "us": `"region":"eu"`}[region]; other != "" &&
				bytes.Contains(bytes.ReplaceAll(r.body, []byte(`""`), []byte(`"`)), []byte(other)) {
				t.Fatalf("the %s export holds another region's events", region)
			}
		})
	}
}

func TestAuditExportRejectsBadQueries(t *testing.T) {
	h := newHarness(t)
	from, to := "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"
	tests := []struct {
		name   string
		params []string
		fields []string
	}{
		{"nothing", nil, []string{"region", "from", "to"}},
		{"bad region", []string{"region", "EU West", "from", from, "to", to}, []string{"region"}},
		{"bad timestamps", []string{"region", "eu", "from", "yesterday", "to", "2026-05-01"}, []string{"from", "to"}},
		{"to before from", []string{"region", "eu", "from", to, "to", from}, []string{"to"}},
		{"too long a range", []string{"region", "eu", "from", "2025-01-01T00:00:00Z", "to", "2026-05-01T00:00:00Z"}, []string{"to"}},
		{"bad format", []string{"region", "eu", "from", from, "to", to, "format", "xlsx"}, []string{"format"}},
		{"bad client", []string{"region", "eu", "from", from, "to", to, "client", "a b"}, []string{"client"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.must(http.StatusUnprocessableEntity, http.MethodGet, exportPath(tc.params...), "")
			if code, fields := r.errorCode(t), r.errorFields(t); code != "validation_failed" || !slices.Equal(fields, tc.fields) {
				t.Fatalf("code %s, fields %v; want %v", code, fields, tc.fields)
			}
		})
	}
	// A "+" offset left unescaped in the URL arrives as a space and is still read.
	h.must(http.StatusOK, http.MethodGet, "/admin/v1/audit/export?region=eu&from=2026-04-01T00:00:00+02:00&to="+to, "")

	r := h.must(http.StatusMethodNotAllowed, http.MethodPost, exportPath("region", "eu"), "")
	if r.header.Get("Allow") != "GET" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	if r := h.send(http.MethodGet, exportPath("region", "eu", "from", from, "to", to), ""); r.status != http.StatusUnauthorized {
		t.Fatalf("without the admin token: %d", r.status)
	}
}
