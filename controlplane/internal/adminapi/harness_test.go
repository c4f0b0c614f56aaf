package adminapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store/storetest"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/admintoken"
	"github.com/portcullis-gw/portcullis/controlplane/internal/health"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// harness is a real admin API over a real database behind a real HTTP server.
type harness struct {
	t     *testing.T
	st    *store.Store
	dbURL string
	url   string
	token string // an admin's API token
	// bootstrap is the bootstrap admin token, which may only manage principals.
	bootstrap string
	changes   atomic.Int64 // onChange calls
	health    fakeHealth   // what GET /deployments/health answers from
	options   []func(*adminapi.API)
}

// fakeHealth is a HealthView whose fleet a test sets. It is safe for concurrent use.
type fakeHealth struct {
	mu    sync.Mutex
	fleet health.Fleet
}

func (f *fakeHealth) Current() health.Fleet {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fleet
}

func (f *fakeHealth) set(fl health.Fleet) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fleet = fl
}

// newHarness starts the API; key files are accepted under /run unless an option
// (applied last) says otherwise.
func newHarness(t *testing.T, options ...func(*adminapi.API)) *harness {
	t.Helper()
	ctx := context.Background()
	st, dbURL := storetest.Open(t)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	dataDir := t.TempDir()
	if err := admintoken.Bootstrap(ctx, st, dataDir, log); err != nil {
		t.Fatalf("bootstrap admin token: %v", err)
	}
	token, err := os.ReadFile(filepath.Join(dataDir, admintoken.FileName))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, dbURL: dbURL, bootstrap: strings.TrimSpace(string(token))}

	h.options = options
	h.url = h.serve(st)
	h.token = admintest.Token(t, h.url, h.bootstrap, "harness-admin", "admin")
	return h
}

// serve starts an admin API over st and returns its URL.
func (h *harness) serve(st *store.Store) string {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	e := echo.New()
	e.HideBanner = true
	e.HTTPErrorHandler = adminapi.ErrorHandler(log)
	e.Use(middleware.RequestID()) // as the control plane does
	api := adminapi.New(st, log, func() { h.changes.Add(1) }, &h.health).KeyFiles("/run", false)
	for _, o := range h.options {
		o(api)
	}
	api.Mount(e, adminauth.Authenticate(st))
	srv := httptest.NewServer(e)
	h.t.Cleanup(srv.Close)
	return srv.URL
}

// replica starts a second admin API on a store of its own over the same database,
// as another control-plane replica, and returns its URL.
func (h *harness) replica() string {
	h.t.Helper()
	st, err := store.Open(context.Background(), h.dbURL)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(st.Close)
	return h.serve(st)
}

// sendTo sends a bodiless request with token to the API at url and returns the status.
func (h *harness) sendTo(url, token, method, path string) int {
	h.t.Helper()
	req, _ := http.NewRequest(method, url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// sql runs a statement on the database directly, behind the API's back.
func (h *harness) sql(q string, args ...any) {
	h.t.Helper()
	conn, err := pgx.Connect(context.Background(), h.dbURL)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), q, args...); err != nil {
		h.t.Fatalf("%s: %v", q, err)
	}
}

// expire makes API token id expired, as if its time had passed.
func (h *harness) expire(id string) {
	h.t.Helper()
	h.sql(`UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, id)
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic value.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return v
}

// errorCode is the admin error code of the body, or "".
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// errorFields lists the fields of a 422's per-field errors.
func (r response) errorFields(t *testing.T) []string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	fields, _ := e["fields"].([]any)
	var names []string
	for _, f := range fields {
		names = append(names, f.(map[string]any)["field"].(string))
	}
	return names
}

// do sends a request with the admin token; headers are name, value pairs.
func (h *harness) do(method, path, body string, headers ...string) response {
	h.t.Helper()
	return h.send(method, path, body, append([]string{"Authorization", "Bearer " + h.token}, headers...)...)
}

// send sends a request without adding the token.
func (h *harness) send(method, path, body string, headers ...string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.url+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// must sends a request and fails the test unless the status is want.
func (h *harness) must(want int, method, path, body string, headers ...string) response {
	h.t.Helper()
	r := h.do(method, path, body, headers...)
	if r.status != want {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// fixture creates the entities that the others refer to.
func (h *harness) fixture() {
	h.t.Helper()
	for _, c := range []struct{ path, body string }{
		{"/admin/v1/tenants", `{"name":"acme"}`},
		{"/admin/v1/tiers", `{"name":"default","requests_per_minute":60,"tokens_per_hour":100000,"max_concurrent_requests":5,"allowed_models":["gpt-4o-mini"]}`},
		{"/admin/v1/residency-rules", `{"residency":"eu","allowed_regions":["eu"]}`},
		{"/admin/v1/providers", `{"name":"openai","kind":"openai"}`},
		{"/admin/v1/deployments", `{"name":"openai-eu","provider":"openai","region":"eu","base_url":"http://127.0.0.1:9100/v1","key_source":"none"}`},
	} {
		h.must(http.StatusCreated, http.MethodPost, c.path, c.body)
	}
}

func (h *harness) version() int64 {
	h.t.Helper()
	v, err := h.st.PolicyVersion(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return v
}
