package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logtest"

	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
)

// isolateEnv clears the PORTCULLIS_* keys a developer's shell may have set.
func isolateEnv(t *testing.T) {
	for _, k := range []string{"PORTCULLIS_DATABASE_URL", "PORTCULLIS_NATS_URL", "PORTCULLIS_LISTEN",
		"PORTCULLIS_DATA_DIR", "PORTCULLIS_ISSUER_URL", "PORTCULLIS_DEV_ISSUER", "PORTCULLIS_EMBEDDED_NATS_LISTEN"} {
		t.Setenv(k, "")
	}
}

func TestOneShotCommands(t *testing.T) {
	isolateEnv(t)
	db := pgtest.Database(t)
	dataDir := t.TempDir()
	ctx := context.Background()
	flags := []string{"--database-url", db, "--data-dir", dataDir}

	tests := []struct {
		name       string
		args       []string
		wantErr    string
		wantStdout string
	}{
		{"migrate", append([]string{"migrate"}, flags...), "", "migrations applied"},
		{"migrate again is a no-op", append(append([]string{}, flags...), "migrate"), "", "migrations applied"},
		{"admin-token reset", append([]string{"admin-token", "reset"}, flags...), "", "admin-token"},
		{"unknown command", append([]string{"frobnicate"}, flags...), "unknown command", ""},
		{"stray argument", append(append([]string{"migrate"}, flags...), "extra"), "unexpected arguments", ""},
		{"bad config names every key", []string{"--listen", "bad"}, "PORTCULLIS_DATABASE_URL", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			err := run(ctx, tt.args, noEnv, &stdout, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Fatalf("stdout %q lacks %q", stdout.String(), tt.wantStdout)
			}
		})
	}
	fi, err := os.Stat(filepath.Join(dataDir, "admin-token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin-token after reset: %v, %v", fi, err)
	}
}

func TestServeUntilCancelled(t *testing.T) {
	isolateEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &logtest.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--database-url", pgtest.Database(t), "--data-dir", t.TempDir(),
			"--listen", "127.0.0.1:0", "--embedded-nats-listen", "127.0.0.1:0", "--log-level", "warn"}, noEnv, stdout, io.Discard)
	}()
	addr := regexp.MustCompile(`listening on (http://\S+)`)
	deadline := time.Now().Add(30 * time.Second)
	var base string
	for base == "" {
		if m := addr.FindStringSubmatch(stdout.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("control plane never announced its address")
		}
		time.Sleep(25 * time.Millisecond)
	}
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context was cancelled")
	}
}

// noEnv is an empty environment, so that a test does not depend on the process's.
func noEnv(string) string { return "" }
