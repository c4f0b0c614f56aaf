package adminapi_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// usageEvents archives a known set of requests through the real archive path, with
// their cost computed from the models' pricing as the data plane does, replays part
// of them, and returns them (each once).
func usageEvents(t *testing.T, h *harness, day time.Time) []audit.Event {
	t.Helper()
	ctx := context.Background()
	models := map[string]policy.Model{}
	for _, m := range []string{`{"id":"mini","name":"gpt-4o-mini","deployment":"openai-eu","upstream_model":"gpt-4o-mini","input_usd_per_1m":0.15,"output_usd_per_1m":0.6}`,
		`{"id":"big","name":"gpt-4o","deployment":"openai-eu","upstream_model":"gpt-4o","input_usd_per_1m":2.5,"output_usd_per_1m":10}`} {
		var model policy.Model
		if err := json.Unmarshal(h.must(http.StatusCreated, http.MethodPost, "/admin/v1/models", m).body, &model); err != nil {
			t.Fatal(err)
		}
		models[model.Name] = model
	}
	var events []store.AuditEvent
	var out []audit.Event
	for i := range 40 {
		model := []string{"gpt-4o-mini", "gpt-4o"}[i%2]
		client := []string{"app-a", "app-b", "app-c"}[i%3]
		tenant := map[string]string{"app-a": "acme", "app-b": "acme", "app-c": "globex"}[client]
		region := []string{"eu", "us"}[i%4/2]
		in, outTokens := int64(100+i*7), int64(20+i*3)
		p := models[model]
		e := audit.Event{V: audit.SchemaVersion, TS: day.Add(time.Duration(i) * 37 * time.Minute), RequestID: fmt.Sprintf("req-%d", i),
			Region: region, Worker: "w1", ClientID: client, TenantID: tenant, Operation: "chat_completions", Model: model,
			TokensIn: in, TokensOut: outTokens, Status: 200,
			CostUSDMicros: int64(math.Round(float64(in)*p.InputUSDPer1M + float64(outTokens)*p.OutputUSDPer1M))}
		if i%10 == 9 {
			e.Status, e.TokensIn, e.TokensOut, e.CostUSDMicros, e.Model = 429, 0, 0, 0, ""
		}
		b, err := chain.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, store.AuditEvent{Event: e, JSON: b})
		out = append(out, e)
	}
	appendAll := func(evs []store.AuditEvent) {
		t.Helper()
		for _, region := range []string{"eu", "us"} {
			var batch []store.AuditEvent
			for _, e := range evs {
				if e.Event.Region == region {
					batch = append(batch, e)
				}
			}
			if _, err := h.st.AppendAudit(ctx, region, batch); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendAll(events[:30])
	appendAll(events[20:]) // a replay overlapping the first batch: 10 duplicates
	appendAll(events)      // everything again
	return out
}

func TestUsageMatchesEventsAndPricing(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	day := time.Date(2026, 4, 14, 0, 0, 0, 0, time.UTC)
	events := usageEvents(t, h, day)

	type totals struct{ requests, in, out, cost int64 }
	want := map[string]map[string]*totals{"client": {}, "tenant": {}, "model": {}}
	for _, e := range events {
		for group, key := range map[string]string{"client": e.ClientID, "tenant": e.TenantID, "model": e.Model} {
			tt := want[group][key]
			if tt == nil {
				tt = &totals{}
				want[group][key] = tt
			}
			tt.requests++
			tt.in += e.TokensIn
			tt.out += e.TokensOut
			tt.cost += e.CostUSDMicros
		}
	}
	// The cost follows the pricing table: gpt-4o-mini at $0.15 / $0.60 and gpt-4o at
	// $2.50 / $10 per million tokens in / out (within rounding to a micro-dollar per event).
	for model, price := range map[string][2]float64{"gpt-4o-mini": {0.15, 0.6}, "gpt-4o": {2.5, 10}} {
		tt := want["model"][model]
		fromPricing := float64(tt.in)*price[0] + float64(tt.out)*price[1]
		if math.Abs(float64(tt.cost)-fromPricing) > float64(tt.requests) {
			t.Fatalf("%s: events cost %d micro-dollars, pricing says %.1f", model, tt.cost, fromPricing)
		}
	}

	from := day.Format(time.RFC3339)
	to := day.Add(48 * time.Hour).Format(time.RFC3339)
	for group, keyField := range map[string]string{"client": "client_id", "tenant": "tenant_id", "model": "model"} {
		t.Run(group, func(t *testing.T) {
			r := h.must(http.StatusOK, http.MethodGet, "/admin/v1/usage?group_by="+group+"&from="+from+"&to="+to, "")
			var body struct {
				GroupBy string                       `json:"group_by"`
				Data    []map[string]json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatal(err)
			}
			if body.GroupBy != group || len(body.Data) != len(want[group]) {
				t.Fatalf("%s: %s", group, r.body)
			}
			for _, row := range body.Data {
				var key string
				_ = json.Unmarshal(row[keyField], &key)
				w := want[group][key]
				if w == nil {
					t.Fatalf("unexpected %s %q", keyField, key)
				}
				num := func(f string) int64 { n, _ := strconv.ParseInt(string(row[f]), 10, 64); return n }
				if num("requests") != w.requests || num("tokens_in") != w.in || num("tokens_out") != w.out || num("cost_usd_micros") != w.cost {
					t.Errorf("%s %q: got %v, want %+v", group, key, row, *w)
				}
				if got, want := string(row["cost_usd"]), fmt.Sprintf("%d.%06d", w.cost/1e6, w.cost%1e6); got != want {
					t.Errorf("%s %q: cost_usd %s, want %s", group, key, got, want)
				}
			}
		})
	}

	// The rollup equals the sum of the archived events (read back from the archive),
	// which hold each request once despite the replays.
	var archived totals
	for _, region := range []string{"eu", "us"} {
		_, err := h.st.ExportAudit(context.Background(), store.AuditQuery{Region: region, From: day, To: day.Add(48 * time.Hour)},
			func(r store.AuditRow) error {
				e, err := audit.Decode(r.Event)
				archived.requests++
				archived.in += e.TokensIn
				archived.out += e.TokensOut
				archived.cost += e.CostUSDMicros
				return err
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	rollup, err := h.st.Usage(context.Background(), "tenant", day, day.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var rolled totals
	for _, u := range rollup {
		rolled.requests += u.Requests
		rolled.in += u.TokensIn
		rolled.out += u.TokensOut
		rolled.cost += u.CostUSDMicros
	}
	if archived != rolled || archived.requests != int64(len(events)) {
		t.Fatalf("archive %+v, rollup %+v, %d requests sent", archived, rolled, len(events))
	}

	t.Run("csv", func(t *testing.T) {
		r := h.must(http.StatusOK, http.MethodGet, "/admin/v1/usage?group_by=client&format=csv&from="+from+"&to="+to, "")
		if !strings.HasPrefix(r.header.Get("Content-Type"), "text/csv") {
			t.Fatalf("content type %q", r.header.Get("Content-Type"))
		}
		records, err := csv.NewReader(strings.NewReader(string(r.body))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(records[0], []string{"client_id", "requests", "tokens_in", "tokens_out", "cost_usd", "cost_usd_micros"}) {
			t.Fatalf("header %v", records[0])
		}
		if len(records) != 1+len(want["client"]) {
			t.Fatalf("%d records", len(records))
		}
		for _, rec := range records[1:] {
			w := want["client"][rec[0]]
			if w == nil || rec[1] != strconv.FormatInt(w.requests, 10) || rec[5] != strconv.FormatInt(w.cost, 10) {
				t.Errorf("record %v, want %+v", rec, w)
			}
		}
	})

	t.Run("range in whole hours", func(t *testing.T) {
		// From 00:30 to 01:10 covers the hours 00:00 and 01:00: the events at 00:00,
		// 00:37, 01:14 and 01:51.
		r := h.must(http.StatusOK, http.MethodGet, "/admin/v1/usage?group_by=model&from="+
			day.Add(30*time.Minute).Format(time.RFC3339)+"&to="+day.Add(70*time.Minute).Format(time.RFC3339), "")
		v := r.json(t)
		if v["from"] != day.Format(time.RFC3339) || v["to"] != day.Add(2*time.Hour).Format(time.RFC3339) {
			t.Fatalf("range %v to %v", v["from"], v["to"])
		}
		var n float64
		for _, row := range v["data"].([]any) {
			n += row.(map[string]any)["requests"].(float64)
		}
		if n != 4 {
			t.Fatalf("%v requests in the two hours, want 4", n)
		}
	})
}

func TestUsageValidation(t *testing.T) {
	h := newHarness(t)
	r := h.do(http.MethodGet, "/admin/v1/usage?group_by=region&from=yesterday&to=2026-04-01T00:00:00Z&format=xml", "")
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	fields := r.errorFields(t)
	for _, f := range []string{"group_by", "from", "format"} {
		if !slices.Contains(fields, f) {
			t.Errorf("fields %v do not name %s", fields, f)
		}
	}
	r = h.do(http.MethodGet, "/admin/v1/usage?group_by=client&from=2026-04-02T00:00:00Z&to=2026-04-01T00:00:00Z", "")
	if r.status != http.StatusUnprocessableEntity || !slices.Contains(r.errorFields(t), "to") {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}

func TestShowbackAndAlertEndpointsAnswer405ToOtherMethods(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct{ method, path, allow string }{
		{http.MethodPost, "/admin/v1/usage", "GET"},
		{http.MethodDelete, "/admin/v1/alerts", "GET"},
		{http.MethodGet, "/admin/v1/alerts/7/ack", "POST"},
	} {
		r := h.do(tc.method, tc.path, "")
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: status %d, Allow %q; want 405 and %q", tc.method, tc.path, r.status, r.header.Get("Allow"), tc.allow)
		}
	}
}

func TestAnomalyRulesAndAlerts(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// The migration seeds the seed's rules.
	r := h.must(http.StatusOK, http.MethodGet, "/admin/v1/anomaly-rules/token_spike", "")
	v := r.json(t)
	if v["kind"] != "token_spike" || v["action"] != "alert_and_throttle" || v["factor"] != 5.0 || v["baseline_days"] != 7.0 ||
		v["min_history_hours"] != 24.0 || v["min_history_days"] != 2.0 {
		t.Fatalf("seeded rule %s", r.body)
	}
	h.must(http.StatusOK, http.MethodGet, "/admin/v1/anomaly-rules/new_source_ip", "")

	r = h.do(http.MethodPost, "/admin/v1/anomaly-rules",
		`{"name":"bad","kind":"cpu_spike","action":"nuke","factor":0.5,"baseline_days":0,"min_baseline_tokens":0,"min_history_hours":-1,"min_history_days":-1,"throttle_minutes":0,"webhook_url":"ftp://x"}`)
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	for _, f := range []string{"kind", "action", "factor", "baseline_days", "min_baseline_tokens", "min_history_hours", "min_history_days", "throttle_minutes", "webhook_url"} {
		if !slices.Contains(r.errorFields(t), f) {
			t.Errorf("fields %v do not name %s", r.errorFields(t), f)
		}
	}
	r = h.must(http.StatusCreated, http.MethodPost, "/admin/v1/anomaly-rules",
		`{"name":"big-spike","kind":"token_spike","action":"block","factor":20,"webhook_url":"https://hooks.example/x"}`)
	if v := r.json(t); v["baseline_days"] != 7.0 || v["min_baseline_tokens"] != 10000.0 || v["enabled"] != true ||
		v["min_history_hours"] != 24.0 || v["min_history_days"] != 2.0 {
		t.Fatalf("defaults not applied: %s", r.body)
	}
	h.must(http.StatusOK, http.MethodPatch, "/admin/v1/anomaly-rules/big-spike", `{"enabled":false}`, "If-Match", r.header.Get("ETag"))
	h.must(http.StatusNoContent, http.MethodDelete, "/admin/v1/anomaly-rules/big-spike", "")

	// Alerts: list, filter, acknowledge.
	for i, client := range []string{"app-a", "app-b"} {
		if _, _, err := h.st.RaiseAlert(ctx, store.Alert{Kind: "token_spike", Severity: "critical", ClientID: client,
			Rule: "token_spike", DedupKey: strconv.Itoa(i), Message: "spike"}); err != nil {
			t.Fatal(err)
		}
	}
	var list struct {
		Data []store.Alert `json:"data"`
	}
	if err := json.Unmarshal(h.must(http.StatusOK, http.MethodGet, "/admin/v1/alerts", "").body, &list); err != nil || len(list.Data) != 2 {
		t.Fatalf("alerts %+v, %v", list, err)
	}
	id := list.Data[0].ID
	r = h.must(http.StatusOK, http.MethodPost, fmt.Sprintf("/admin/v1/alerts/%d/ack", id), "")
	if v := r.json(t); v["acknowledged_by"] != "harness-admin" || v["acknowledged_at"] == nil {
		t.Fatalf("ack: %s", r.body)
	}
	if err := json.Unmarshal(h.must(http.StatusOK, http.MethodGet, "/admin/v1/alerts?acknowledged=false", "").body, &list); err != nil ||
		len(list.Data) != 1 || list.Data[0].ID == id {
		t.Fatalf("unacknowledged alerts %+v, %v", list, err)
	}
	h.must(http.StatusNotFound, http.MethodPost, "/admin/v1/alerts/999999/ack", "")
	r = h.do(http.MethodGet, "/admin/v1/alerts?limit=0&acknowledged=maybe", "")
	if r.status != http.StatusUnprocessableEntity || len(r.errorFields(t)) != 2 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}

// TestAnomalyRuleHistoryValidation: min_history_hours and min_history_days are
// refused with a 422 naming the field when negative or beyond what the baseline
// window can hold (baseline_days × 24 hours on baseline_days + 1 UTC days), on create
// and on a patch that shrinks the window under them.
func TestAnomalyRuleHistoryValidation(t *testing.T) {
	h := newHarness(t)
	for i, tc := range []struct {
		name   string
		fields string   // JSON members added to a token_spike rule
		bad    []string // the fields the 422 names; none means 201
	}{
		{"defaults", ``, nil},
		{"no history needed", `"min_history_hours":0,"min_history_days":0`, nil},
		{"the whole window", `"baseline_days":7,"min_history_hours":168,"min_history_days":8`, nil},
		{"one day window", `"baseline_days":1,"min_history_hours":24,"min_history_days":2`, nil},
		{"negative", `"min_history_hours":-1,"min_history_days":-1`, []string{"min_history_hours", "min_history_days"}},
		{"more hours than the window", `"baseline_days":7,"min_history_hours":169`, []string{"min_history_hours"}},
		{"more days than the window", `"baseline_days":7,"min_history_days":9`, []string{"min_history_days"}},
		{"one day window, more", `"baseline_days":1,"min_history_hours":25,"min_history_days":3`, []string{"min_history_hours", "min_history_days"}},
		{"not integers", `"min_history_hours":"24","min_history_days":1.5`, []string{"min_history_hours", "min_history_days"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(`{"name":"rule-%d","kind":"token_spike"`, i)
			if tc.fields != "" {
				body += "," + tc.fields
			}
			r := h.do(http.MethodPost, "/admin/v1/anomaly-rules", body+"}")
			if tc.bad == nil {
				if r.status != http.StatusCreated {
					t.Fatalf("status %d, want 201: %s", r.status, r.body)
				}
				return
			}
			if r.status != http.StatusUnprocessableEntity {
				t.Fatalf("status %d, want 422: %s", r.status, r.body)
			}
			if got := r.errorFields(t); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tc.bad))) {
				t.Fatalf("422 names %v, want %v: %s", got, tc.bad, r.body)
			}
		})
	}

	// Shrinking the window under the required history is refused on the history
	// field; null returns a field to its default.
	r := h.must(http.StatusCreated, http.MethodPost, "/admin/v1/anomaly-rules",
		`{"name":"wide","kind":"token_spike","baseline_days":30,"min_history_hours":200,"min_history_days":10}`)
	r = h.do(http.MethodPatch, "/admin/v1/anomaly-rules/wide", `{"baseline_days":7}`, "If-Match", r.header.Get("ETag"))
	if r.status != http.StatusUnprocessableEntity || !slices.Equal(slices.Sorted(slices.Values(r.errorFields(t))), []string{"min_history_days", "min_history_hours"}) {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	r = h.must(http.StatusOK, http.MethodPatch, "/admin/v1/anomaly-rules/wide",
		`{"baseline_days":7,"min_history_hours":null,"min_history_days":null}`, "If-Match", "*")
	if v := r.json(t); v["min_history_hours"] != 24.0 || v["min_history_days"] != 2.0 {
		t.Fatalf("null did not restore the defaults: %s", r.body)
	}
}
