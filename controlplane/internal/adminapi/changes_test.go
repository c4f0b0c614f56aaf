package adminapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/portcullis-gw/portcullis/controlplane/changelog"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// exportChanges reads GET /changes/export.
func (h *harness) exportChanges(token string) []store.ChangeRecord {
	h.t.Helper()
	r := h.as(token, http.MethodGet, "/admin/v1/changes/export", "")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/x-ndjson" {
		h.t.Fatalf("export: %d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var out []store.ChangeRecord
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec store.ChangeRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			h.t.Fatalf("export line %s: %v", sc.Bytes(), err)
		}
		out = append(out, rec)
	}
	return out
}

// TestChangeHistoryRecordsEveryWriteWithItsActor: each write is one row naming the
// principal, its roles, its credential, the source and request id, with before and
// after and the policy version it made; the chain verifies, a row altered behind the
// database's back does not, and the database refuses updates and deletes.
func TestChangeHistoryRecordsEveryWriteWithItsActor(t *testing.T) {
	h := newHarness(t)
	h.fixture()
	op := h.tokenFor("ops-1", "operator")
	r := h.as(op, http.MethodPatch, "/admin/v1/tiers/default", `{"requests_per_minute":90}`, "If-Match", "*")
	wantStatus(t, "operator patches a tier", r, http.StatusOK, "")
	requestID := r.header.Get("X-Request-Id")
	// Refused writes (404, 409) are not changes.
	wantStatus(t, "override of no client", h.do(http.MethodPut, "/admin/v1/clients/nobody/limit-override",
		`{"requests_per_minute":1,"ttl_seconds":60,"reason":"x"}`), http.StatusNotFound, "not_found")
	wantStatus(t, "delete a provider in use", h.do(http.MethodDelete, "/admin/v1/providers/openai", ""), http.StatusConflict, "conflict")

	var page struct {
		Items     []store.ChangeRecord
		NextAfter *int64 `json:"next_after"`
	}
	if err := json.Unmarshal(h.must(http.StatusOK, http.MethodGet, "/admin/v1/changes?resource=tiers&actor=ops-1", "").body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 1 {
		t.Fatalf("changes of tiers by ops-1: %+v", page.Items)
	}
	c := page.Items[0]
	if c.Action != "update" || c.Key != "default" || c.Roles != "operator" || c.PrincipalKind != "service" ||
		!strings.HasPrefix(c.Credential, "token:tok_") || c.Source != "127.0.0.1" || c.RequestID == "" || c.RequestID != requestID ||
		c.PolicyVersion == nil || *c.PolicyVersion < 1 || *c.PolicyVersion > h.version() {
		t.Fatalf("change %+v", c)
	}
	if !strings.Contains(string(c.Before), `"requests_per_minute":60`) || !strings.Contains(string(c.After), `"requests_per_minute":90`) {
		t.Fatalf("before %s, after %s", c.Before, c.After)
	}

	all := h.exportChanges(h.token)
	// The fixture's five creates, the principals and tokens made for the test, the
	// tier and the override: nothing refused is recorded.
	var resources []string
	for _, r := range all {
		resources = append(resources, r.Resource+"/"+r.Action)
	}
	joined := strings.Join(resources, " ")
	for _, want := range []string{"principals/create", "api-tokens/create", "tenants/create", "deployments/create", "tiers/update"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("history %s lacks %s", joined, want)
		}
	}
	if strings.Contains(joined, "providers/delete") || strings.Contains(joined, "limit-overrides") {
		t.Fatalf("a refused write is in the history: %s", joined)
	}
	for _, r := range all {
		if strings.Contains(string(r.After), "pct_") || strings.Contains(string(r.After), "token_hash") {
			t.Fatalf("change %d holds a token: %s", r.Seq, r.After)
		}
	}
	if n, err := changelog.Verify(all); err != nil || n != len(all) {
		t.Fatalf("verify the untouched history: %d, %v", n, err)
	}

	// The database itself refuses to rewrite history…
	conn, err := pgx.Connect(context.Background(), h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range []string{`UPDATE admin_changes SET principal = 'someone-else' WHERE seq = 1`,
		`DELETE FROM admin_changes WHERE seq = 1`, `TRUNCATE admin_changes`} {
		if _, err := conn.Exec(context.Background(), q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Fatalf("%s: %v, want refused as append-only", q, err)
		}
	}
	// …and a superuser who gets past that is caught by the chain.
	h.sql(`ALTER TABLE admin_changes DISABLE TRIGGER admin_changes_append_only`)
	h.sql(`UPDATE admin_changes SET after = replace(after, '90', '9000') WHERE resource = 'tiers'`)
	h.sql(`ALTER TABLE admin_changes ENABLE TRIGGER admin_changes_append_only`)
	if _, err := changelog.Verify(h.exportChanges(h.token)); err == nil || !strings.Contains(err.Error(), "altered") {
		t.Fatalf("verify a tampered history: %v, want the altered row named", err)
	}
}
