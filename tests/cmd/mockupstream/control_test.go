package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// testNow is the control API's clock in these tests.
var testNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func newTestControl(t *testing.T) (*control, *mockupstream.Server, *logtest.Buffer) {
	t.Helper()
	mock := mockupstream.New(mockupstream.Options{})
	var logs logtest.Buffer
	c := newControl(mock, slog.New(slog.NewJSONHandler(&logs, nil)))
	c.now = func() time.Time { return testNow }
	return c, mock, &logs
}

// do sends one request to h and returns the status and the body.
func do(t *testing.T, h http.Handler, method, path, body string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestControlRejectsBadCalls(t *testing.T) {
	tests := []struct {
		name        string
		method      string
		path        string
		body        string
		wantStatus  int
		wantCode    string
		wantMessage []string
	}{
		{name: "unknown field", method: "POST", path: failPath,
			body:       `{"deployment":"openai-eu","mode":"5xx","for_seconds":30,"extra":1}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{`unknown field "extra"`}},
		{name: "every missing field at once", method: "POST", path: failPath, body: `{}`,
			wantStatus: 400, wantCode: "invalid_request",
			wantMessage: []string{"deployment is required", "mode is required", "for_seconds is required"}},
		{name: "unknown mode", method: "POST", path: failPath, body: `{"deployment":"openai-eu","mode":"boom","for_seconds":30}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{`mode "boom" is unknown`}},
		{name: "zero seconds", method: "POST", path: failPath, body: `{"deployment":"openai-eu","mode":"5xx","for_seconds":0}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"for_seconds must be between 1 and 3600, not 0"}},
		{name: "over an hour", method: "POST", path: failPath, body: `{"deployment":"openai-eu","mode":"hang","for_seconds":3601}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"for_seconds must be between 1 and 3600, not 3601"}},
		{name: "fractional seconds", method: "POST", path: failPath, body: `{"deployment":"openai-eu","mode":"5xx","for_seconds":1.5}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"for_seconds"}},
		{name: "deployment not a name", method: "POST", path: failPath, body: `{"deployment":"a/b","mode":"5xx","for_seconds":30}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"deployment must be"}},
		{name: "empty body", method: "POST", path: failPath, body: ``,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"must be a JSON object"}},
		{name: "not JSON", method: "POST", path: failPath, body: `deployment=openai-eu`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"invalid body"}},
		{name: "two objects", method: "POST", path: failPath,
			body:       `{"deployment":"openai-eu","mode":"5xx","for_seconds":30}{"deployment":"openai-us"}`,
			wantStatus: 400, wantCode: "invalid_request", wantMessage: []string{"single JSON object"}},
		{name: "body over 64 KiB", method: "POST", path: failPath,
			body:       `{"deployment":"` + strings.Repeat("a", 64<<10) + `"}`,
			wantStatus: 413, wantCode: "body_too_large", wantMessage: []string{"exceeds 65536 bytes"}},
		{name: "other path", method: "GET", path: "/mock/other",
			wantStatus: 404, wantCode: "not_found", wantMessage: []string{"/mock/fail"}},
		{name: "other method", method: "PUT", path: failPath,
			wantStatus: 405, wantCode: "method_not_allowed", wantMessage: []string{"PUT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, mock, _ := newTestControl(t)
			resp, body := do(t, c, tc.method, tc.path, tc.body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			var got errorBody
			if err := json.Unmarshal([]byte(body), &got); err != nil || got.Error.Code != tc.wantCode {
				t.Fatalf("body %s, want code %q (%v)", body, tc.wantCode, err)
			}
			for _, w := range tc.wantMessage {
				if !strings.Contains(got.Error.Message, w) {
					t.Errorf("message %q does not mention %q", got.Error.Message, w)
				}
			}
			if tc.wantStatus == 405 && resp.Header.Get("Allow") != "GET, POST, DELETE" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
			if n := len(mock.DeploymentFailures()); n != 0 {
				t.Errorf("a rejected call left %d failures", n)
			}
		})
	}
}

func TestControlSetsListsAndClearsFailures(t *testing.T) {
	c, mock, logs := newTestControl(t)
	c.now = time.Now // the mock expires failures by the real clock
	now := time.Now()

	for _, tc := range []struct {
		body string
		want mockupstream.Failure
	}{
		{`{"deployment":"openai-eu","mode":"5xx","for_seconds":120}`, mockupstream.Fail500},
		{`{"deployment":"openai-us","mode":"429","for_seconds":60}`, mockupstream.Fail429},
		{`{"deployment":"anthropic-eu","mode":"cut_stream","for_seconds":60}`, mockupstream.FailCutStream},
		{`{"deployment":"ollama-eu","mode":"hang","for_seconds":60}`, mockupstream.FailHang},
	} {
		resp, body := do(t, c, "POST", failPath, tc.body)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s: status %d: %s", tc.body, resp.StatusCode, body)
		}
		var req failRequest
		_ = json.Unmarshal([]byte(tc.body), &req)
		var got failView
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		until, err := time.Parse(time.RFC3339, got.Until)
		if err != nil || got.Deployment != req.Deployment || got.Mode != req.Mode {
			t.Fatalf("POST %s answered %s (%v)", tc.body, body, err)
		}
		if wantUntil := now.Add(time.Duration(*req.ForSeconds) * time.Second); until.Before(wantUntil.Add(-2*time.Second)) || until.After(wantUntil.Add(2*time.Second)) {
			t.Errorf("until %v, want about %v", until, wantUntil)
		}
	}

	resp, body := do(t, c, "GET", failPath, "")
	var list struct {
		Data []failView `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: status %d: %s (%v)", resp.StatusCode, body, err)
	}
	wantModes := []string{"anthropic-eu=cut_stream", "ollama-eu=hang", "openai-eu=5xx", "openai-us=429"}
	if len(list.Data) != len(wantModes) {
		t.Fatalf("GET listed %s, want %v", body, wantModes)
	}
	for i, w := range wantModes {
		if got := list.Data[i].Deployment + "=" + list.Data[i].Mode; got != w {
			t.Errorf("GET data[%d] = %s, want %s", i, got, w)
		}
	}

	// "none" ends one deployment's failure and needs no for_seconds.
	if resp, body := do(t, c, "POST", failPath, `{"deployment":"openai-us","mode":"none"}`); resp.StatusCode != 200 || !strings.Contains(body, `"mode":"none"`) {
		t.Fatalf("POST none: status %d: %s", resp.StatusCode, body)
	}
	if n := len(mock.DeploymentFailures()); n != 3 {
		t.Fatalf("%d failures after none, want 3", n)
	}
	if resp, body := do(t, c, "DELETE", failPath, ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: status %d: %s", resp.StatusCode, body)
	}
	if resp, body := do(t, c, "GET", failPath, ""); resp.StatusCode != 200 || strings.TrimSpace(body) != `{"data":[]}` {
		t.Fatalf("GET after DELETE: status %d: %s", resp.StatusCode, body)
	}

	// One log line per call, naming the deployment and mode of a POST, nothing else of a body.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 8 {
		t.Fatalf("%d log lines for 8 calls:\n%s", len(lines), logs.String())
	}
	if !strings.Contains(lines[0], `"deployment":"openai-eu"`) || !strings.Contains(lines[0], `"mode":"5xx"`) || strings.Contains(lines[0], "for_seconds") {
		t.Errorf("first log line %s", lines[0])
	}
}

func TestControlSetsUntilFromItsClock(t *testing.T) {
	c, mock, _ := newTestControl(t)
	c.now = func() time.Time { return time.Now().Add(-time.Hour) } // already over when set
	resp, body := do(t, c, "POST", failPath, `{"deployment":"openai-eu","mode":"5xx","for_seconds":60}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if n := len(mock.DeploymentFailures()); n != 0 {
		t.Fatalf("a failure that ended before now is listed (%d)", n)
	}
	c.now = func() time.Time { return testNow }
	_, body = do(t, c, "POST", failPath, `{"deployment":"openai-eu","mode":"5xx","for_seconds":90}`)
	if !strings.Contains(body, `"until":"2025-03-01T12:01:30Z"`) {
		t.Fatalf("answer %s, want until 90 s after the clock", body)
	}
}
