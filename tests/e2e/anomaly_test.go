package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// TestTokenSpikeThrottlesAndShowback: a client with a 7-day baseline (inserted
// history) that jumps above 5x gets a token_spike alert within 10 s; the signed
// webhook arrives; its limits drop through an override the data planes enforce, and
// the override expires by itself after the rule's throttle minutes. The usage rollup
// of a known set of requests equals the sum of their audit events, and their cost follows the pricing table.
func TestTokenSpikeThrottlesAndShowback(t *testing.T) {
	t.Parallel()
	secret := []byte("e2e-webhook-secret-0123456789")
	secretFile := filepath.Join(t.TempDir(), "webhook.key")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var hooks []*http.Request
	var bodies [][]byte
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks, bodies = append(hooks, r), append(bodies, raw)
		mu.Unlock()
	}))
	defer hook.Close()

	s := startStack(t, withAnomaly(hook.URL, secretFile), withWorkers(worker{name: "eu", region: "eu"}))
	s.seed(t)
	s.waitReady(t)
	// Prices for showback, and a spike rule a few requests can trip: the baseline
	// floor is 10 tokens an hour, and the throttle lasts one minute.
	var models struct {
		Data []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"items"`
	}
	s.admin(t, "GET", "/models?limit=100", nil, &models)
	for _, m := range models.Data {
		if m.Name == "gpt-4o-mini" {
			s.patch(t, "/models/"+url.PathEscape(m.ID), map[string]any{"input_usd_per_1m": 0.15, "output_usd_per_1m": 0.60})
		}
	}
	s.patch(t, "/anomaly-rules/token_spike", map[string]any{"min_baseline_tokens": 10, "throttle_minutes": 1})
	token := s.limitedClient(t, "spiky", "eu", 0, 0, 0)
	start := time.Now().UTC()

	// Seven days of history at 20 tokens an hour, ending two hours ago: 168 hours on 7
	// or 8 UTC days, more than the rule's min_history_hours (24) on min_history_days
	// (2), so the rule judges the client. Its throttle is the fair share, min(tier / 5,
	// 5 × 10) = 50 tokens an hour, below the spike (over 100).
	conn, err := pgx.Connect(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	now := time.Now().UTC().Truncate(time.Hour)
	for h := 2; h < 2+7*24; h++ {
		if _, err := conn.Exec(context.Background(), `INSERT INTO usage_hourly
			(hour, region, tenant_id, client_id, model, requests, tokens_in, tokens_out, cost_usd_micros)
			VALUES ($1, 'eu', 'demo', 'spiky', 'gpt-4o-mini', 1, 10, 10, 0)`, now.Add(-time.Duration(h)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}

	// The spike: well over 5 x 20 tokens within the hour.
	var ids []string
	for i := range 12 {
		id := "spike-" + string(rune('a'+i))
		r := s.callWithID(t, "eu", token, id, chatBody("gpt-4o-mini"))
		if r.Status != http.StatusOK {
			t.Fatalf("request %s: %d %s", id, r.Status, r.Body)
		}
		ids = append(ids, id)
	}
	_, byID := s.waitAudited(t, "eu", ids, 20*time.Second)

	var alerts struct {
		Data []struct {
			Kind     string `json:"kind"`
			ClientID string `json:"client_id"`
		} `json:"data"`
	}
	took := waitfor.Within(t, 10*time.Second, "a token_spike alert for spiky", func() bool {
		s.admin(t, "GET", "/alerts", nil, &alerts)
		for _, a := range alerts.Data {
			if a.Kind == "token_spike" && a.ClientID == "spiky" {
				return true
			}
		}
		return false
	})
	t.Logf("token_spike alert %s after the spike was archived", took.Round(100*time.Millisecond))

	// The webhook: signed over "v2:" + timestamp + ":" + its URL + ":" + body
	// (docs/audit.md#webhook).
	waitfor.Within(t, 10*time.Second, "the alert webhook", func() bool { mu.Lock(); defer mu.Unlock(); return len(hooks) > 0 })
	mu.Lock()
	ts, sig, body := hooks[0].Header.Get("X-Portcullis-Timestamp"), hooks[0].Header.Get("X-Portcullis-Signature"), bodies[0]
	mu.Unlock()
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v2:" + ts + ":" + hook.URL + ":" + string(body)))
	if want := "v2=" + hex.EncodeToString(m.Sum(nil)); sig != want || !strings.Contains(string(body), "token_spike") {
		t.Fatalf("webhook signature %q, want %q; body %s", sig, want, body)
	}

	// The throttle reaches the data plane, which refuses the client's tokens.
	waitfor.Within(t, 10*time.Second, "the throttle to be enforced", func() bool {
		r := s.call(t, "eu", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini"))
		return r.Status == http.StatusTooManyRequests && strings.Contains(string(r.Body), "override")
	})
	// ... and ends by itself after its minute: the override expires then (the data
	// planes lifting an expired override on their own is TestLimitOverride's, with a
	// 4 s override instead of waiting out this one).
	var ov struct {
		ExpiresAt time.Time `json:"expires_at"`
		SetBy     string    `json:"set_by"`
	}
	s.admin(t, "GET", "/clients/spiky/limit-override", nil, &ov)
	if left := time.Until(ov.ExpiresAt); left <= 0 || left > 61*time.Second || !strings.HasPrefix(ov.SetBy, "anomaly") {
		t.Fatalf("throttle override expires in %s, set by %q: want within its minute, set by the anomaly detector", left, ov.SetBy)
	}

	// Showback: the rollup of the spike's hour(s) equals the sum of its audit events.
	var wantIn, wantOut, wantCost int64
	for _, id := range ids {
		e := byID[id][0]
		wantIn, wantOut, wantCost = wantIn+e.TokensIn, wantOut+e.TokensOut, wantCost+e.CostUSDMicros
		if price := float64(e.TokensIn)*0.15 + float64(e.TokensOut)*0.60; e.CostUSDMicros < int64(price) || e.CostUSDMicros > int64(price)+1 {
			t.Fatalf("event %s costs %d micro-USD; the pricing table says %.1f", id, e.CostUSDMicros, price)
		}
	}
	var usage struct {
		Data []struct {
			ClientID      string `json:"client_id"`
			Requests      int64  `json:"requests"`
			TokensIn      int64  `json:"tokens_in"`
			TokensOut     int64  `json:"tokens_out"`
			CostUSDMicros int64  `json:"cost_usd_micros"`
		} `json:"data"`
	}
	q := url.Values{"group_by": {"client"}, "from": {start.Format(time.RFC3339)}, "to": {time.Now().UTC().Add(time.Hour).Format(time.RFC3339)}}
	waitfor.Within(t, 10*time.Second, "usage to include the spike", func() bool {
		s.admin(t, "GET", "/usage?"+q.Encode(), nil, &usage)
		for _, u := range usage.Data {
			if u.ClientID == "spiky" && u.Requests >= int64(len(ids)) {
				return true
			}
		}
		return false
	})
	// The rollup also holds the probes around the throttle: compare with the archive
	// of every spiky event since the start. The last probe may still be on its way to
	// the archive, so both are read again until they agree.
	var mismatch string
	if !waitfor.Until(10*time.Second, func() bool {
		s.admin(t, "GET", "/usage?"+q.Encode(), nil, &usage)
		_, all := s.waitAudited(t, "eu", ids, time.Second)
		var allIn, allOut, allCost, allReq int64
		for _, events := range all {
			for _, e := range events {
				if e.ClientID == "spiky" && !e.TS.Before(start.Truncate(time.Hour)) {
					allReq++
					allIn, allOut, allCost = allIn+e.TokensIn, allOut+e.TokensOut, allCost+e.CostUSDMicros
				}
			}
		}
		for _, u := range usage.Data {
			if u.ClientID == "spiky" && (u.Requests != allReq || u.TokensIn != allIn || u.TokensOut != allOut || u.CostUSDMicros != allCost) {
				mismatch = fmt.Sprintf("usage %+v; the audit events sum to %d requests, %d in, %d out, %d micro-USD", u, allReq, allIn, allOut, allCost)
				return false
			}
		}
		return true
	}) {
		t.Fatal(mismatch)
	}
	if wantIn == 0 || wantOut == 0 || wantCost == 0 {
		t.Fatalf("the spike's events carry no tokens or cost: %d %d %d", wantIn, wantOut, wantCost)
	}
}
