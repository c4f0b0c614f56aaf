package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr []string
		want    config
	}{
		{
			name: "defaults",
			want: config{Listen: "127.0.0.1:9100", ControlListen: "127.0.0.1:9101", Name: "mock"},
		},
		{
			name: "env then flags",
			args: []string{"--name", "flag-name", "--control-listen", "127.0.0.1:3"},
			env:  map[string]string{envListen: "127.0.0.1:1", envControlListen: "127.0.0.1:2", envName: "env-name", envChunkDelay: "5ms"},
			want: config{Listen: "127.0.0.1:1", ControlListen: "127.0.0.1:3", Name: "flag-name", ChunkDelay: 5 * time.Millisecond},
		},
		{
			name: "key files from env and flags",
			args: []string{"--admin-key-file", "/flag/admin"},
			env:  map[string]string{envRequireKeyFile: "/env/require", envAcceptKeysFile: "/env/accept", envAdminKeyFile: "/env/admin"},
			want: config{Listen: "127.0.0.1:9100", ControlListen: "127.0.0.1:9101", Name: "mock",
				RequireKeyFile: "/env/require", AcceptKeysFile: "/env/accept", AdminKeyFile: "/flag/admin"},
		},
		{
			name: "empty variables are unset, but an empty control address turns it off",
			env:  map[string]string{envListen: "", envName: "", envControlListen: ""},
			want: config{Listen: "127.0.0.1:9100", Name: "mock"},
		},
		{
			name: "an empty control-listen flag turns it off",
			args: []string{"--control-listen", ""},
			env:  map[string]string{envControlListen: "127.0.0.1:2"},
			want: config{Listen: "127.0.0.1:9100", Name: "mock"},
		},
		{
			name:    "all bad values at once",
			args:    []string{"--listen", "nope", "--control-listen", "nope2", "--chunk-delay", "-1s", "extra"},
			wantErr: []string{`listen "nope"`, `control-listen "nope2"`, `chunk-delay "-1s"`, "unexpected arguments"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadConfig(tc.args, lookupIn(tc.env), io.Discard)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("config %+v, want %+v", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// lookupIn is an os.LookupEnv over env.
func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func TestRunServesWithKeyAndStops(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("run-test-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logR, logW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--require-key-file", keyFile}, lookupIn(map[string]string{envControlListen: ""}), logW, io.Discard)
		logW.Close()
	}()

	lines := bufio.NewScanner(logR)
	if !lines.Scan() {
		t.Fatalf("no log line: %v", <-done)
	}
	var first struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if err := json.Unmarshal(lines.Bytes(), &first); err != nil || first.Addr == "" {
		t.Fatalf("first log line %q: %v", lines.Text(), err)
	}
	go func() { // keep draining the log so run never blocks writing it
		for lines.Scan() {
		}
	}()

	for _, tc := range []struct {
		auth string
		want int
	}{{"", 401}, {"Bearer run-test-key", 200}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+first.Addr+"/v1/models", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("auth %q: status %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
	}

	for _, tc := range []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"bearer only", map[string]string{"Authorization": "Bearer run-test-key", "Anthropic-Version": "2023-06-01"}, 401},
		{"x-api-key", map[string]string{"X-Api-Key": "run-test-key", "Anthropic-Version": "2023-06-01"}, 200},
	} {
		body := `{"model":"claude-3-5-sonnet","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
		req, _ := http.NewRequest(http.MethodPost, "http://"+first.Addr+"/v1/messages", strings.NewReader(body))
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("/v1/messages with %s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestServeControlsFailuresPerDeployment(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mock := mockupstream.New(mockupstream.Options{})
	logR, logW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, config{Listen: "127.0.0.1:0", ControlListen: "127.0.0.1:0", Name: "mock"}, mock, nil, logging.New(logW, "info"))
		logW.Close()
	}()
	lines := bufio.NewScanner(logR)
	if !lines.Scan() {
		t.Fatalf("no log line: %v", <-done)
	}
	var first struct {
		Addr        string `json:"addr"`
		ControlAddr string `json:"control_addr"`
	}
	if err := json.Unmarshal(lines.Bytes(), &first); err != nil || first.Addr == "" || first.ControlAddr == "" {
		t.Fatalf("first log line %q: %v", lines.Text(), err)
	}
	go func() {
		for lines.Scan() {
		}
	}()

	for _, body := range []string{
		`{"deployment":"openai-us","mode":"5xx","for_seconds":60}`,
		`{"deployment":"openai-eu","mode":"hang","for_seconds":60}`,
	} {
		resp, err := http.Post("http://"+first.ControlAddr+"/mock/fail", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /mock/fail %s: status %d", body, resp.StatusCode)
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	chat := func(deployment string) (*http.Response, error) {
		return client.Post("http://"+first.Addr+"/d/"+deployment+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	}
	for deployment, want := range map[string]int{"openai-us": 500, "ollama-eu": 200} {
		resp, err := chat(deployment)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: status %d, want %d", deployment, resp.StatusCode, want)
		}
	}

	// A hung request neither answers nor holds the shutdown up (which would give up
	// with an error after 5 s).
	hung := make(chan error, 1)
	go func() {
		resp, err := chat("openai-eu")
		if err == nil {
			resp.Body.Close()
		}
		hung <- err
	}()
	waitfor.That(t, "the mock's state", func() bool { return mock.InFlight() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if err := <-hung; err == nil {
		t.Fatal("the hung request got an answer")
	}
}
