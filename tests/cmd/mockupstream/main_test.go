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
			want: config{Listen: "127.0.0.1:9100", Name: "mock"},
		},
		{
			name: "env then flags",
			args: []string{"--name", "flag-name"},
			env:  map[string]string{envListen: "127.0.0.1:1", envName: "env-name", envChunkDelay: "5ms"},
			want: config{Listen: "127.0.0.1:1", Name: "flag-name", ChunkDelay: 5 * time.Millisecond},
		},
		{
			name:    "all bad values at once",
			args:    []string{"--listen", "nope", "--chunk-delay", "-1s", "extra"},
			wantErr: []string{`listen "nope"`, `chunk-delay "-1s"`, "unexpected arguments"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadConfig(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
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
		done <- run(ctx, []string{"--listen", "127.0.0.1:0", "--require-key-file", keyFile}, func(string) string { return "" }, logW, io.Discard)
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
