package adminapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/checkpoint"
	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/export"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/signing"
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

// TestSignedAuditExportsAndCheckpoints: with a signer, every export carries an
// export checkpoint that verifies with the key GET /audit/signing-key serves, and
// GET /audit/checkpoints lists a region's kept chain checkpoints, newest first;
// without one, exports carry none and the key is 404.
func TestSignedAuditExportsAndCheckpoints(t *testing.T) {
	s, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, func(a *adminapi.API) { a.WithAuditSigner(s) })
	h.archive("eu", 50)
	key := h.must(http.StatusOK, http.MethodGet, "/admin/v1/audit/signing-key", "")
	keys, err := signing.ParsePublicKeys(key.body)
	if err != nil || key.header.Get("X-Portcullis-Key-Id") != s.KeyID() || !slices.Equal(keys.KeyIDs(), []string{s.KeyID()}) {
		t.Fatalf("signing key: %v %v %s", err, key.header, key.body)
	}
	from, to := auditT0.Format(time.RFC3339), auditT0.Add(24*time.Hour).Format(time.RFC3339)
	for _, params := range [][]string{
		{"region", "eu", "from", from, "to", to},
		{"region", "eu", "from", from, "to", to, "format", "csv", "client", "client-2"},
		{"region", "eu", "from", auditT0.Add(10 * time.Second).Format(time.RFC3339), "to", auditT0.Add(20 * time.Second).Format(time.RFC3339)},
		{"region", "ap", "from", from, "to", to},
	} {
		r := h.must(http.StatusOK, http.MethodGet, exportPath(params...), "")
		sum, err := export.Verify(bytes.NewReader(r.body), export.WithPublicKeys(keys))
		if err != nil || !sum.SignatureChecked || sum.Checkpoint.KeyID != s.KeyID() {
			t.Fatalf("%v: %+v %v", params, sum, err)
		}
	}

	for _, seq := range []int64{10, 50} {
		if _, err := h.st.AddAuditCheckpoint(context.Background(), checkpoint.Sign(s, "eu", seq, chain.Genesis("eu"), auditT0)); err != nil {
			t.Fatal(err)
		}
	}
	var list struct {
		Data []checkpoint.Checkpoint `json:"data"`
	}
	r := h.must(http.StatusOK, http.MethodGet, "/admin/v1/audit/checkpoints?region=eu", "")
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Data) != 2 || list.Data[0].Seq != 50 || list.Data[0].Verify(keys) != nil {
		t.Fatalf("checkpoints: %v %s", err, r.body)
	}
	r = h.must(http.StatusOK, http.MethodGet, "/admin/v1/audit/checkpoints?region=eu&limit=1", "")
	if err := json.Unmarshal(r.body, &list); err != nil || len(list.Data) != 1 || list.Data[0].Seq != 50 {
		t.Fatalf("one checkpoint: %v %s", err, r.body)
	}
	if r := h.must(http.StatusOK, http.MethodGet, "/admin/v1/audit/checkpoints?region=us", ""); string(r.body) != "{\"data\":[]}\n" {
		t.Fatalf("no checkpoints: %s", r.body)
	}
	r = h.must(http.StatusUnprocessableEntity, http.MethodGet, "/admin/v1/audit/checkpoints?limit=0", "")
	if fields := r.errorFields(t); !slices.Equal(fields, []string{"region", "limit"}) {
		t.Fatalf("bad query: fields %v", fields)
	}
	for _, path := range []string{"/admin/v1/audit/checkpoints", "/admin/v1/audit/signing-key"} {
		if r := h.must(http.StatusMethodNotAllowed, http.MethodPost, path, ""); r.header.Get("Allow") != "GET" {
			t.Fatalf("POST %s: Allow %q", path, r.header.Get("Allow"))
		}
	}

	unsigned := newHarness(t)
	unsigned.archive("eu", 5)
	unsigned.must(http.StatusNotFound, http.MethodGet, "/admin/v1/audit/signing-key", "")
	r = unsigned.must(http.StatusOK, http.MethodGet, exportPath("region", "eu", "from", from, "to", to), "")
	if sum, err := export.Verify(bytes.NewReader(r.body)); err != nil || sum.Checkpoint != nil {
		t.Fatalf("an export without a signer: %+v %v", sum, err)
	}
	if _, err := export.Verify(bytes.NewReader(r.body), export.WithPublicKeys(keys)); err == nil {
		t.Fatal("an unsigned export verified with --pubkey")
	}
}
