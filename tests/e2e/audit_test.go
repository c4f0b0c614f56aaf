package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

// exportedEvent is one NDJSON line of an audit export.
type exportedEvent struct {
	Seq   int64       `json:"seq"`
	Event audit.Event `json:"event"`
}

// export fetches region's audit export for the last hour as NDJSON, and returns
// its raw bytes and its events.
func (s *stack) export(t *testing.T, region string) ([]byte, []audit.Event) {
	t.Helper()
	q := url.Values{"region": {region}, "from": {time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)},
		"to": {time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, "format": {"ndjson"}}
	req, _ := http.NewRequest("GET", s.adminURL+"/admin/v1/audit/export?"+q.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+s.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("export %s: %d %s", region, resp.StatusCode, raw)
	}
	var events []audit.Event
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line exportedEvent
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("export line %q: %v", sc.Text(), err)
		}
		if line.Event.RequestID != "" {
			events = append(events, line.Event)
		}
	}
	return raw, events
}

// testID is the id a test knows an event by: the X-Request-Id it sent (the event's
// client_request_id), else the gateway's request id.
func testID(e audit.Event) string {
	if e.ClientRequestID != "" {
		return e.ClientRequestID
	}
	return e.RequestID
}

// waitAudited waits until every id in want has its event in region's export, and
// returns the export's events by testID.
func (s *stack) waitAudited(t *testing.T, region string, want []string, within time.Duration) ([]byte, map[string][]audit.Event) {
	t.Helper()
	var raw []byte
	var byID map[string][]audit.Event
	missing := want
	deadline := time.Now().Add(within)
	for {
		var events []audit.Event
		raw, events = s.export(t, region)
		byID = map[string][]audit.Event{}
		for _, e := range events {
			byID[testID(e)] = append(byID[testID(e)], e)
		}
		missing = missing[:0:0]
		for _, id := range want {
			if len(byID[id]) == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			return raw, byID
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d events not archived after %s, e.g. %v", region, len(missing), len(want), within, missing[:min(5, len(missing))])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// send sends a raw chat body to worker with token and request id, and returns the
// status.
func sendRaw(t *testing.T, s *stack, worker, token, id, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+s.dp[worker].Addr()+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Request-Id", id)
	req.Header.Set("X-Client-Id", "web-frontend")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAuditPrivacyRejectionsAndResidency: a prompt with a canary and a card number
// leaves neither in the logs, the stream, Postgres or the export, and its hash is
// the HMAC of the prompt under the audit key; 401, 403 and 429 are audited with no
// token material; each region's export holds only its own events, and verifies.
func TestAuditPrivacyRejectionsAndResidency(t *testing.T) {
	t.Parallel()
	s := startStack(t, withLogs())
	s.seed(t)
	s.waitReady(t)
	euToken := s.mint(t, "eu-app")
	anyToken := s.mint(t, "global-app")
	analytics := s.mint(t, "analytics-svc")
	oneRPM := s.limitedClient(t, "one-rpm", "", 1, 0, 0)

	canary, card := fmt.Sprintf("canary-%d", time.Now().UnixNano()), "4111 1111 1111 1111"
	messages := `[{"role":"user","content":"my card is ` + card + ` and the word is ` + canary + `"}]`
	if st := sendRaw(t, s, "eu", euToken, "priv-eu", `{"model":"gpt-4o-mini","messages":`+messages+`}`); st != http.StatusOK {
		t.Fatalf("private prompt: %d", st)
	}
	if st := sendRaw(t, s, "us", anyToken, "plain-us", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`); st != http.StatusOK {
		t.Fatalf("us request: %d", st)
	}
	if st := sendRaw(t, s, "eu", "not-a-jwt-"+canary, "rej-401", `{"model":"gpt-4o-mini","messages":[]}`); st != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", st)
	}
	if st := sendRaw(t, s, "eu", analytics, "rej-403", `{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}`); st != http.StatusForbidden {
		t.Fatalf("model not allowed: %d", st)
	}
	sendRaw(t, s, "eu", oneRPM, "ok-rpm", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}`)
	if st := sendRaw(t, s, "eu", oneRPM, "rej-429", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}]}`); st != http.StatusTooManyRequests {
		t.Fatalf("second request of a 1-rpm client: %d", st)
	}

	euRaw, eu := s.waitAudited(t, "eu", []string{"priv-eu", "rej-401", "rej-403", "rej-429"}, 20*time.Second)
	usRaw, us := s.waitAudited(t, "us", []string{"plain-us"}, 20*time.Second)

	// Residency of the archive.
	for _, events := range eu {
		for _, e := range events {
			if e.Region != "eu" {
				t.Fatalf("the eu export holds a %s event %s", e.Region, e.RequestID)
			}
		}
	}
	if len(us["priv-eu"]) != 0 || len(eu["plain-us"]) != 0 {
		t.Fatal("an export holds another region's event")
	}
	for _, events := range us {
		for _, e := range events {
			if e.Region != "us" {
				t.Fatalf("the us export holds a %s event %s", e.Region, e.RequestID)
			}
		}
	}

	// The private request's event: metadata and the keyed hash of its prompt.
	priv := eu["priv-eu"][0]
	if priv.PromptHash != audit.Hash(s.auditKey, []byte(messages)) {
		t.Fatalf("prompt_hash %s is not the HMAC of the prompt under the audit key", priv.PromptHash)
	}
	if priv.Status != 200 || priv.ClientID != "eu-app" || priv.TenantID != "demo" || priv.Deployment != "openai-eu" ||
		priv.Provider != "openai" || priv.Operation != "chat" || priv.TokensIn == 0 || priv.TokensOut == 0 ||
		!strings.HasPrefix(priv.ResponseHash, audit.HashPrefix) || priv.Headers["x-client-id"] != "web-frontend" ||
		priv.ClientRequestID != "priv-eu" || priv.SourceNet != "127.0.0.0/24" {
		t.Fatalf("private request's event %+v", priv)
	}
	if _, ok := priv.Headers["authorization"]; ok {
		t.Fatal("the Authorization header was audited")
	}

	// Rejections are audited with their status and code, and no token.
	for id, want := range map[string]struct {
		status int
		code   string
	}{"rej-401": {401, "invalid_token"}, "rej-403": {403, "model_not_allowed"}, "rej-429": {429, "rate_limit_exceeded"}} {
		e := eu[id][0]
		if e.Status != want.status || e.ErrorCode == nil || *e.ErrorCode != want.code {
			t.Errorf("%s: status %d code %v, want %d %s", id, e.Status, e.ErrorCode, want.status, want.code)
		}
	}

	// Neither the canary nor the card number, in any form, anywhere; nor a token.
	forbidden := map[string]string{"the canary": canary, "the card number": card, "the card digits": strings.ReplaceAll(card, " ", ""),
		"a client JWT": euToken, "the admin token": s.adminToken}
	places := map[string]string{"logs": s.logs.String(), "eu export": string(euRaw), "us export": string(usRaw),
		"stream": streamContents(t, s), "postgres": auditTables(t, s.dbURL)}
	for place, text := range places {
		for what, secret := range forbidden {
			if strings.Contains(text, secret) {
				t.Errorf("%s appears in %s", what, place)
			}
		}
	}

	// The exports verify.
	bin, err := portcullisCLI()
	if err != nil {
		t.Fatal(err)
	}
	for region, raw := range map[string][]byte{"eu": euRaw, "us": usRaw} {
		f := filepath.Join(t.TempDir(), region+".ndjson")
		if err := os.WriteFile(f, raw, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "audit", "verify", f).CombinedOutput(); err != nil {
			t.Fatalf("audit verify %s: %v\n%s", region, err, out)
		}
	}
	checkSignedExport(t, s, bin, euRaw)
}

// checkSignedExport is the acceptance test of signed audit checkpoints, on a real
// export: it passes `portcullis audit verify --pubkey` with the control plane's audit
// public key. Rewritten (an event's tokens_in changed, every chain hash after it and
// the head recomputed, the checkpoint patched to match or dropped) it still passes
// the plain chain checks, and fails with --pubkey. And each region's chain head is
// signed at intervals and published on PC_CHECKPOINTS.
func checkSignedExport(t *testing.T, s *stack, bin string, raw []byte) {
	t.Helper()
	dir := t.TempDir()
	pub := s.cp.AuditPublicKeyFile()
	good := filepath.Join(dir, "eu.ndjson")
	if err := os.WriteFile(good, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "audit", "verify", "--pubkey", pub, good).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "checkpoint: signature verified") {
		t.Fatalf("audit verify --pubkey of the untouched export: %v\n%s", err, out)
	}
	for name, forge := range map[string]func(head map[string]json.RawMessage, rowsDigest string){
		"patched": func(head map[string]json.RawMessage, rowsDigest string) {
			var cp map[string]json.RawMessage
			if err := json.Unmarshal(head["checkpoint"], &cp); err != nil {
				t.Fatal(err)
			}
			cp["chain_hash"], cp["rows_digest"] = head["hash"], json.RawMessage(strconv.Quote(rowsDigest))
			head["checkpoint"] = orderedJSON(t, cp, "v", "region", "seq", "chain_hash", "at", "rows_digest", "key_id", "sig")
		},
		"dropped": func(head map[string]json.RawMessage, _ string) { delete(head, "checkpoint") },
	} {
		bad := filepath.Join(dir, name+".ndjson")
		if err := os.WriteFile(bad, rewriteExport(t, raw, forge), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "audit", "verify", bad).CombinedOutput(); err != nil {
			t.Fatalf("%s: the rewritten export does not pass the plain chain checks, so it tests nothing: %v\n%s", name, err, out)
		}
		out, err := exec.Command(bin, "audit", "verify", "--pubkey", pub, bad).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "verification failed") || strings.Contains(string(out), "OK:") {
			t.Fatalf("%s: audit verify --pubkey of a rewritten export: %v\n%s", name, err, out)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(string(out)))
	}

	conn, err := pgx.Connect(context.Background(), s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	waitfor.Within(t, 15*time.Second, "a published checkpoint of each region", func() bool {
		var regions int
		err := conn.QueryRow(context.Background(), `SELECT count(DISTINCT region) FROM audit_checkpoints
			WHERE region IN ('eu', 'us') AND published_at IS NOT NULL`).Scan(&regions)
		return err == nil && regions == 2
	})
}

// rewriteExport changes tokens_in of the first event that has one to 999999 in an
// NDJSON export, recomputes that row's chain hash and every later one with plain
// SHA-256, then the head's hash, and lets forge change the head, given the new
// rows' digest (docs/audit.md).
func rewriteExport(t *testing.T, raw []byte, forge func(head map[string]json.RawMessage, rowsDigest string)) []byte {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	var out bytes.Buffer
	digest := sha256.New()
	prev, lastSeq, edited := "", int64(0), false
	for _, l := range lines[:len(lines)-1] {
		var r struct {
			Seq       int64           `json:"seq"`
			PrevHash  string          `json:"prev_hash"`
			ChainHash string          `json:"chain_hash"`
			Event     json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if edited {
			r.PrevHash = prev
		}
		if i := bytes.Index(r.Event, []byte(`"tokens_in":`)); !edited && i >= 0 {
			end := i + len(`"tokens_in":`) + bytes.IndexByte(r.Event[i+len(`"tokens_in":`):], ',')
			r.Event = append(append(append([]byte{}, r.Event[:i]...), `"tokens_in":999999`...), r.Event[end:]...)
			edited = true
		}
		if edited {
			sum := sha256.Sum256(append([]byte(r.PrevHash), r.Event...))
			r.ChainHash = hex.EncodeToString(sum[:])
		}
		prev, lastSeq = r.ChainHash, r.Seq
		fmt.Fprintf(&out, "{\"seq\":%d,\"prev_hash\":%q,\"chain_hash\":%q,\"event\":%s}\n", r.Seq, r.PrevHash, r.ChainHash, r.Event)
		fmt.Fprintf(digest, "%d %s\n", r.Seq, r.ChainHash)
	}
	if !edited {
		t.Fatal("no event to rewrite")
	}
	var tail struct {
		Head map[string]json.RawMessage `json:"chain_head"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &tail); err != nil {
		t.Fatal(err)
	}
	if string(tail.Head["seq"]) == strconv.FormatInt(lastSeq, 10) { // the rows reach the head
		tail.Head["hash"] = json.RawMessage(strconv.Quote(prev))
	}
	forge(tail.Head, hex.EncodeToString(digest.Sum(nil)))
	out.WriteString(`{"chain_head":`)
	out.Write(orderedJSON(t, tail.Head, "region", "seq", "hash", "exported_at", "from", "to", "client", "rows", "first_seq", "last_seq", "checkpoint"))
	out.WriteString("}\n")
	return out.Bytes()
}

// orderedJSON writes the fields of m present among keys, in that order.
func orderedJSON(t *testing.T, m map[string]json.RawMessage, keys ...string) json.RawMessage {
	t.Helper()
	var b bytes.Buffer
	b.WriteByte('{')
	for _, k := range keys {
		v, ok := m[k]
		if !ok {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", k, v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// streamContents returns every message of every audit stream, concatenated.
func streamContents(t *testing.T, s *stack) string {
	t.Helper()
	nc := s.natsConnect(t, natsauth.ControlPlane())
	js, _ := jetstream.New(nc)
	var b strings.Builder
	for _, region := range []string{"eu", "us"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cons, err := js.OrderedConsumer(ctx, natsnames.AuditStream(region), jetstream.OrderedConsumerConfig{})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		info, _ := cons.Info(ctx)
		n := int(info.NumPending)
		for i := 0; i < n; i++ {
			m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			b.Write(m.Data())
			b.WriteByte('\n')
		}
		cancel()
	}
	return b.String()
}

// auditTables returns every row of the archive's tables, as text.
func auditTables(t *testing.T, dbURL string) string {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var b strings.Builder
	rows, err := conn.Query(context.Background(), `SELECT t::text FROM audit_events t`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s)
		b.WriteByte('\n')
	}
	if rows.Err() != nil || b.Len() == 0 {
		t.Fatalf("reading audit_events: %v (%d bytes)", rows.Err(), b.Len())
	}
	return b.String()
}

// outageFor is how long TestAuditSurvivesANATSOutage keeps NATS down: several of
// the client's reconnect attempts (2 s apart) and about 1,200 spooled events, which
// is what the test needs; the seed's 30 s outage shows nothing more and costs 20 s
// of every make test.
const outageFor = 12 * time.Second

// TestAuditSurvivesANATSOutage: at a steady 100 requests/s through two workers
// (two regions), NATS is stopped for outageFor and started again. Afterwards the
// archive holds exactly one event per request sent, none missing and none twice, and
// both workers' spools are empty.
func TestAuditSurvivesANATSOutage(t *testing.T) {
	t.Parallel()
	s := startStack(t, withNATS())
	s.seed(t)
	s.waitReady(t)
	tokens := map[string]string{"eu": s.limitedClient(t, "outage-eu", "eu", 0, 0, 0), "us": s.limitedClient(t, "outage-any", "", 0, 0, 0)}

	stop := make(chan struct{})
	l := startLoad(s, tokens, 100, 100*60, stop)
	time.Sleep(2 * time.Second)
	s.nats.Stop()
	outage := time.Now()
	time.Sleep(outageFor)
	spooled := map[string]string{}
	for name, dp := range s.dp {
		spooled[name] = metricValue(metrics(t, dp.MetricsAddr()), "portcullis_audit_spool_events")
	}
	s.restartNATS(t)
	t.Logf("NATS was down for %s; spooled events then: %v", time.Since(outage).Round(time.Second), spooled)
	time.Sleep(2 * time.Second)
	close(stop)
	l.wg.Wait()
	sent := l.sent.Load()

	want := map[string][]string{}
	for n := range sent {
		worker := []string{"eu", "us"}[n%2]
		want[worker] = append(want[worker], fmt.Sprintf("load-%s-%d", worker, n))
	}
	for region, ids := range want {
		_, byID := s.waitAudited(t, region, ids, 60*time.Second)
		ours := 0
		for id, events := range byID {
			if !strings.HasPrefix(id, "load-") {
				continue
			}
			ours++
			if len(events) != 1 {
				t.Fatalf("%s: %d events for request %s", region, len(events), id)
			}
		}
		if ours != len(ids) {
			t.Fatalf("%s: %d load events archived for %d requests sent", region, ours, len(ids))
		}
	}
	for name, dp := range s.dp {
		waitfor.Within(t, 10*time.Second, name+"'s spool to empty", func() bool {
			return metricValue(metrics(t, dp.MetricsAddr()), "portcullis_audit_spool_events") == "0"
		})
		if spooled[name] == "0" || spooled[name] == "" {
			t.Errorf("%s spooled no events during the outage (%q): the test did not exercise the spool", name, spooled[name])
		}
	}
	t.Logf("%d requests sent, %d answered 200; every one archived exactly once", sent, l.ok.Load())
}

// metricValue returns the value of the unlabelled series name in a /metrics page.
func metricValue(page, name string) string {
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// TestRepeatedClientRequestIDsAreEachArchived: the gateway owns request ids, so 100
// requests carrying the same X-Request-Id are 100 events in the archive and 100
// requests in showback, each with its own request id and the client's id beside it.
func TestRepeatedClientRequestIDsAreEachArchived(t *testing.T) {
	t.Parallel()
	s := startStack(t, withWorkers(worker{name: "eu", region: "eu"}))
	s.seed(t)
	s.waitReady(t)
	start := time.Now().UTC()
	token := s.limitedClient(t, "same-id", "", 0, 0, 0)
	const n = 100
	gatewayIDs := map[string]bool{}
	for range n {
		r := s.callWithID(t, "eu", token, "same", chatBody("gpt-4o-mini"))
		if r.Status != http.StatusOK || r.Header.Get("X-Client-Request-Id") != "same" {
			t.Fatalf("status %d, X-Client-Request-Id %q: %s", r.Status, r.Header.Get("X-Client-Request-Id"), r.Body)
		}
		gatewayIDs[r.Header.Get("X-Request-Id")] = true
	}
	if len(gatewayIDs) != n {
		t.Fatalf("%d distinct gateway request ids for %d requests", len(gatewayIDs), n)
	}
	var byID map[string][]audit.Event
	waitfor.Within(t, 15*time.Second, "100 archived events of the repeated id", func() bool {
		_, byID = s.waitAudited(t, "eu", []string{"same"}, 5*time.Second)
		return len(byID["same"]) >= n
	})
	if got := len(byID["same"]); got != n {
		t.Fatalf("%d archived events carry client_request_id same, want %d", got, n)
	}
	for _, e := range byID["same"] {
		if !gatewayIDs[e.RequestID] {
			t.Fatalf("archived request id %q was never answered to the client", e.RequestID)
		}
	}
	// Showback counts every request of the client: the 100, and the GET /v1/models
	// limitedClient waited with.
	var all int64
	_, everything := s.waitAudited(t, "eu", nil, time.Second)
	for _, events := range everything {
		for _, e := range events {
			if e.ClientID == "same-id" {
				all++
			}
		}
	}
	var usage struct {
		Data []struct {
			ClientID string `json:"client_id"`
			Requests int64  `json:"requests"`
		} `json:"data"`
	}
	q := url.Values{"group_by": {"client"}, "from": {start.Truncate(time.Hour).Format(time.RFC3339)}, "to": {time.Now().UTC().Add(time.Hour).Format(time.RFC3339)}}
	var got int64
	waitfor.Within(t, 15*time.Second, "showback to count every request", func() bool {
		s.admin(t, "GET", "/usage?"+q.Encode(), nil, &usage)
		for _, u := range usage.Data {
			if u.ClientID == "same-id" {
				got = u.Requests
			}
		}
		return got >= all
	})
	if got != all || all < n {
		t.Fatalf("showback counts %d requests of same-id, the archive %d, want the same, at least %d", got, all, n)
	}
}
