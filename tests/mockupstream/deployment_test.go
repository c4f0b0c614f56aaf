package mockupstream_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

func TestDeploymentPaths(t *testing.T) {
	anthropic := http.Header{"Anthropic-Version": {"2023-06-01"}}
	messagesBody := `{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	tests := []struct {
		name           string
		method, path   string
		body           string
		header         http.Header
		wantStatus     int
		wantPath       string
		wantDeployment string
	}{
		{name: "chat", method: "POST", path: "/d/openai-eu/v1/chat/completions", body: chatBody,
			wantStatus: 200, wantPath: "/v1/chat/completions", wantDeployment: "openai-eu"},
		{name: "models", method: "GET", path: "/d/ollama-eu/v1/models",
			wantStatus: 200, wantPath: "/v1/models", wantDeployment: "ollama-eu"},
		{name: "messages speak Anthropic", method: "POST", path: "/d/anthropic-us/v1/messages", body: messagesBody, header: anthropic,
			wantStatus: 200, wantPath: "/v1/messages", wantDeployment: "anthropic-us"},
		{name: "plain path has no deployment", method: "POST", path: "/v1/chat/completions", body: chatBody,
			wantStatus: 200, wantPath: "/v1/chat/completions"},
		{name: "empty name", method: "GET", path: "/d//v1/models",
			wantStatus: 404, wantPath: "/d//v1/models"},
		{name: "name alone", method: "GET", path: "/d/openai-eu",
			wantStatus: 404, wantPath: "/", wantDeployment: "openai-eu"},
		{name: "unknown route under a name", method: "GET", path: "/d/openai-eu/v2/models",
			wantStatus: 404, wantPath: "/v2/models", wantDeployment: "openai-eu"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, url := start(t, mockupstream.Options{})
			resp, body := call(t, tc.method, url+tc.path, tc.body, tc.header)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
			}
			got := m.Requests()
			if len(got) != 1 || got[0].Path != tc.wantPath || got[0].Deployment != tc.wantDeployment {
				t.Fatalf("recorded %+v, want path %q deployment %q", got, tc.wantPath, tc.wantDeployment)
			}
		})
	}
}

func TestDeploymentFailure(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	status := func(path string) int {
		t.Helper()
		resp, _ := call(t, http.MethodPost, url+path+"/v1/chat/completions", chatBody, nil)
		return resp.StatusCode
	}
	const eu, us, plain = "/d/openai-eu", "/d/openai-us", ""
	until := time.Now().Add(time.Hour)

	steps := []struct {
		name string
		act  func()
		want map[string]int // by path prefix
	}{
		{"one deployment fails", func() { m.SetDeploymentFailure("openai-eu", mockupstream.Fail500, until) },
			map[string]int{eu: 500, us: 200, plain: 200}},
		{"a later failure replaces it", func() { m.SetDeploymentFailure("openai-eu", mockupstream.Fail429, until) },
			map[string]int{eu: 429, us: 200, plain: 200}},
		{"it wins over the global failure", func() { m.SetFailure(mockupstream.Fail529) },
			map[string]int{eu: 429, us: 529, plain: 529}},
		{"cleared, the global failure applies", func() { m.ClearDeploymentFailure("openai-eu") },
			map[string]int{eu: 529, us: 529, plain: 529}},
		{"FailNone clears one", func() {
			m.SetFailure(mockupstream.FailNone)
			m.SetDeploymentFailure("openai-us", mockupstream.Fail500, until)
			m.SetDeploymentFailure("openai-eu", mockupstream.Fail500, until)
			m.SetDeploymentFailure("openai-us", mockupstream.FailNone, until)
		}, map[string]int{eu: 500, us: 200, plain: 200}},
		{"clear all", m.ClearDeploymentFailures, map[string]int{eu: 200, us: 200, plain: 200}},
		{"an end already past is no failure", func() {
			m.SetDeploymentFailure("openai-eu", mockupstream.Fail500, time.Now().Add(-time.Second))
		}, map[string]int{eu: 200, us: 200, plain: 200}},
		{"Reset clears it", func() {
			m.SetDeploymentFailure("openai-eu", mockupstream.Fail500, until)
			m.Reset()
		}, map[string]int{eu: 200, us: 200, plain: 200}},
	}
	for _, s := range steps {
		s.act()
		for path, want := range s.want {
			if got := status(path); got != want {
				t.Errorf("%s: %q answered %d, want %d", s.name, path, got, want)
			}
		}
	}
}

func TestDeploymentFailuresListsActiveOnes(t *testing.T) {
	m, _ := start(t, mockupstream.Options{})
	until := time.Now().Add(time.Hour).Truncate(time.Second)
	m.SetDeploymentFailure("openai-us", mockupstream.FailHang, until)
	m.SetDeploymentFailure("anthropic-eu", mockupstream.FailCutStream, until)
	m.SetDeploymentFailure("ollama-eu", mockupstream.Fail500, time.Now().Add(-time.Second))
	got := m.DeploymentFailures()
	want := []mockupstream.DeploymentFailure{
		{Deployment: "anthropic-eu", Failure: mockupstream.FailCutStream, Until: until},
		{Deployment: "openai-us", Failure: mockupstream.FailHang, Until: until},
	}
	if len(got) != len(want) {
		t.Fatalf("DeploymentFailures() = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Deployment != want[i].Deployment || got[i].Failure != want[i].Failure || !got[i].Until.Equal(want[i].Until) {
			t.Errorf("DeploymentFailures()[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestDeploymentFailureEndsByItself(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	m.SetDeploymentFailure("openai-eu", mockupstream.Fail500, time.Now().Add(200*time.Millisecond))
	waitfor.That(t, "the mock's state", func() bool { return len(m.DeploymentFailures()) == 0 })
	if resp, body := call(t, http.MethodPost, url+"/d/openai-eu/v1/chat/completions", chatBody, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d after the failure ended: %s", resp.StatusCode, body)
	}
}

func TestFailHang(t *testing.T) {
	t.Run("until the client gives up", func(t *testing.T) {
		m, url := start(t, mockupstream.Options{})
		m.SetDeploymentFailure("openai-eu", mockupstream.FailHang, time.Now().Add(time.Hour))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			resp, err := post(ctx, url+"/d/openai-eu/v1/chat/completions", chatBody)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		waitfor.That(t, "the mock's state", func() bool { return m.InFlight() == 1 })
		// Another deployment is served meanwhile.
		if resp, body := call(t, http.MethodPost, url+"/d/openai-us/v1/chat/completions", chatBody, nil); resp.StatusCode != 200 {
			t.Fatalf("openai-us: status %d: %s", resp.StatusCode, body)
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
		waitfor.That(t, "the mock's state", func() bool { return m.InFlight() == 0 })
	})
	t.Run("until the server closes", func(t *testing.T) {
		m, url := start(t, mockupstream.Options{})
		m.SetFailure(mockupstream.FailHang)
		done := make(chan error, 1)
		go func() {
			resp, err := post(context.Background(), url+"/v1/chat/completions", chatBody)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		waitfor.That(t, "the mock's state", func() bool { return m.InFlight() == 1 })
		m.Close()
		m.Close() // idempotent
		if err := <-done; err == nil {
			t.Fatal("got an answer, want a dropped connection")
		}
		// Once closed, a hung request drops at once.
		if resp, err := post(context.Background(), url+"/v1/chat/completions", chatBody); err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d after Close, want a dropped connection", resp.StatusCode)
		}
	})
}
