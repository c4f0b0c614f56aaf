package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
	var stdout bytes.Buffer
	if err := run(ctx, append([]string{"admin-token", "disable"}, flags...), noEnv, &stdout, io.Discard); err != nil ||
		!strings.Contains(stdout.String(), "1 admin token(s) disabled") {
		t.Fatalf("admin-token disable: %v, %q", err, stdout.String())
	}
	if _, err := os.Stat(filepath.Join(dataDir, "admin-token")); !os.IsNotExist(err) {
		t.Fatalf("the disabled token's file is still there: %v", err)
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

// TestNATSAuth: `controlplane nats-auth eu us` writes the server's accounts.conf and
// credentials for the control plane, ops and each region's data planes, prints their
// paths and no credential, and keeps the account across runs (JetStream keeps an
// account's streams under its key).
func TestNATSAuth(t *testing.T) {
	isolateEnv(t)
	dataDir := t.TempDir()
	args := []string{"nats-auth", "--database-url", "postgres://127.0.0.1:5432/unused", "--data-dir", dataDir, "eu", "us"}
	var stdout bytes.Buffer
	if err := run(context.Background(), args, os.Getenv, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(dataDir, "nats-auth")
	conf, err := os.ReadFile(filepath.Join(dir, "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"controlplane", "ops", "dp-eu", "dp-us"} {
		path := filepath.Join(dir, role+".creds")
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", path, fi.Mode().Perm())
		}
		if !strings.Contains(stdout.String(), "credentials of "+role+": "+path) {
			t.Errorf("output does not name %s:\n%s", path, stdout.String())
		}
		creds, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if seed := regexp.MustCompile(`SU[A-Z2-7]{56}`).Find(creds); seed == nil || strings.Contains(stdout.String(), string(seed)) {
			t.Errorf("%s: no seed, or the output shows it", role)
		}
	}
	account := regexp.MustCompile(`(?m)^  (A[A-Z2-7]{55}):`).FindAllStringSubmatch(string(conf), -1)
	if len(account) != 5 {
		t.Fatalf("accounts.conf preloads %d accounts, want PORTCULLIS, the system account, OPS, DP_EU and DP_US:\n%s", len(account), conf)
	}
	stdout.Reset()
	if err := run(context.Background(), args[:len(args)-1], os.Getenv, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	again, err := os.ReadFile(filepath.Join(dir, "accounts.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range account {
		if !strings.Contains(string(again), a[1]) {
			t.Fatalf("account %s is gone after a second run", a[1])
		}
	}
	flags := args[:len(args)-2]
	err = run(context.Background(), append(slices.Clone(flags), "e.u"), os.Getenv, &stdout, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `region "e.u"`) {
		t.Fatalf("nats-auth e.u: %v, want a refusal naming the region", err)
	}

	// Revoke: both dp-eu users issued so far, and new credentials for dp-eu.
	before, err := os.ReadFile(filepath.Join(dir, "dp-eu.creds"))
	if err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	if err := run(context.Background(), append(slices.Clone(flags), "revoke", "dp-eu"), os.Getenv, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout.String(), "revoked 2 credentials of dp-eu; its new credentials: "+filepath.Join(dir, "dp-eu.creds")) {
		t.Fatalf("revoke output:\n%s", stdout.String())
	}
	after, err := os.ReadFile(filepath.Join(dir, "dp-eu.creds"))
	if err != nil || bytes.Equal(before, after) {
		t.Fatalf("dp-eu.creds not replaced (%v)", err)
	}
	for _, bad := range [][]string{{"revoke"}, {"revoke", "admin"}} {
		if err := run(context.Background(), append(slices.Clone(flags), bad...), os.Getenv, &stdout, io.Discard); err == nil {
			t.Errorf("nats-auth %v succeeded", bad)
		}
	}
}
