package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

func TestOverrideCommands(t *testing.T) {
	c := newCLI(t)
	c.mustRun("tenants", "create", "--json", `{"name":"acme"}`)
	c.mustRun("tiers", "create", "--json", `{"name":"t1","requests_per_minute":60,"tokens_per_hour":1000,"max_concurrent_requests":5}`)
	c.mustRun("clients", "create", "--json", `{"client_id":"app-1","tenant":"acme","tier":"t1"}`, "--residency", "global")
	until := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)

	steps := []struct {
		name       string
		args       []string
		wantCode   apierr.Code // "" means success
		wantField  string
		wantStdout []string
		wantStderr string
	}{
		{name: "get before any", args: []string{"overrides", "get", "app-1"}, wantCode: apierr.NotFound},
		{name: "set for a while", args: []string{"overrides", "set", "app-1", "--requests-per-minute", "5", "--for", "15m", "--reason", "token spike"},
			wantStdout: []string{`"client_id": "app-1"`, `"requests_per_minute": 5`, `"reason": "token spike"`, `"set_by": "test-admin"`}},
		{name: "get", args: []string{"overrides", "get", "app-1"}, wantStdout: []string{`"requests_per_minute": 5`}},
		{name: "replace until a time, flags after the id or before", args: []string{"overrides", "set", "--tokens-per-hour", "100",
			"app-1", "--max-concurrent-requests", "2", "--until", until.Format(time.RFC3339), "--reason", "launch"},
			wantStdout: []string{`"tokens_per_hour": 100`, `"max_concurrent_requests": 2`, `"expires_at": "` + until.Format(time.RFC3339) + `"`, `"revision": 2`}},
		{name: "list", args: []string{"overrides", "list"}, wantStdout: []string{`"client_id": "app-1"`, `"reason": "launch"`}},
		{name: "zero limit is refused by the server", args: []string{"overrides", "set", "app-1", "--requests-per-minute", "0", "--for", "1m", "--reason", "x"},
			wantCode: apierr.ValidationFailed, wantField: "requests_per_minute"},
		{name: "too long is refused by the server", args: []string{"overrides", "set", "app-1", "--requests-per-minute", "1", "--for", "721h", "--reason", "x"},
			wantCode: apierr.ValidationFailed, wantField: "ttl_seconds"},
		{name: "unknown client", args: []string{"overrides", "set", "ghost", "--requests-per-minute", "1", "--for", "1m", "--reason", "x"},
			wantCode: apierr.NotFound},
		{name: "clear", args: []string{"overrides", "clear", "app-1"}, wantStderr: "cleared the limit override of client app-1"},
		{name: "clear again", args: []string{"overrides", "clear", "app-1"}, wantCode: apierr.NotFound},
		{name: "list after clear", args: []string{"overrides", "list"}, wantStdout: []string{"[]"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, errOut, err := c.run(s.args...)
			if s.wantCode == "" {
				if err != nil {
					t.Fatalf("%v\nstderr: %s", err, errOut)
				}
				for _, w := range s.wantStdout {
					if !strings.Contains(out, w) {
						t.Errorf("stdout %s lacks %s", out, w)
					}
				}
				if !strings.Contains(errOut, s.wantStderr) {
					t.Errorf("stderr %q lacks %q", errOut, s.wantStderr)
				}
				return
			}
			apiErr, ok := errors.AsType[*APIError](err)
			if !ok || apiErr.Code != s.wantCode {
				t.Fatalf("err = %v, want API error %s", err, s.wantCode)
			}
			if s.wantField != "" && !strings.Contains(err.Error(), "\n  "+s.wantField+": ") {
				t.Fatalf("error %q does not list field %s", err.Error(), s.wantField)
			}
		})
	}

	// What "set" prints is the stored override, in the snapshot's own shape.
	out := c.mustRun("overrides", "set", "app-1", "--max-concurrent-requests", "1", "--for", "1h", "--reason", "r")
	var o policy.LimitOverride
	decode(t, out, &o)
	if o.ClientID != "app-1" || o.MaxConcurrentRequests != 1 || o.RequestsPerMinute != 0 ||
		o.ExpiresAt.Before(time.Now().Add(59*time.Minute)) || o.ExpiresAt.After(time.Now().Add(time.Hour)) {
		t.Fatalf("set printed %+v", o)
	}
}

func TestOverrideUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown verb", []string{"overrides", "explode"}, "usage error"},
		{"set without a client", []string{"overrides", "set", "--requests-per-minute", "1", "--for", "1m", "--reason", "r"}, "usage error"},
		{"get without a client", []string{"overrides", "get"}, "usage error"},
		{"clear with two clients", []string{"overrides", "clear", "a", "b"}, "usage error"},
		{"no limit", []string{"overrides", "set", "app", "--for", "1m", "--reason", "r"}, "at least one of --requests-per-minute"},
		{"no expiry", []string{"overrides", "set", "app", "--requests-per-minute", "1", "--reason", "r"}, "--for or --until is required"},
		{"both expiries", []string{"overrides", "set", "app", "--requests-per-minute", "1", "--for", "1m", "--until", "2030-01-01T00:00:00Z", "--reason", "r"}, "not both"},
		{"fractional duration", []string{"overrides", "set", "app", "--requests-per-minute", "1", "--for", "1500ms", "--reason", "r"}, "whole number of seconds"},
		{"bad time", []string{"overrides", "set", "app", "--requests-per-minute", "1", "--until", "tomorrow", "--reason", "r"}, "RFC 3339"},
		{"no reason", []string{"overrides", "set", "app", "--requests-per-minute", "1", "--for", "1m"}, "--reason is required"},
		{"every problem at once", []string{"overrides", "set", "app"}, "at least one of --requests-per-minute, --tokens-per-hour or --max-concurrent-requests; --for or --until is required; --reason is required"},
		{"non-numeric limit", []string{"overrides", "set", "app", "--requests-per-minute", "many"}, "usage error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append([]string{"--admin-url", "http://127.0.0.1:1"}, tt.args...)
			err := Run(context.Background(), args, IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut},
				func(k string) string { return map[string]string{EnvAdminToken: "pca_secret"}[k] })
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want a usage error (nothing sent)", err)
			}
			if strings.Contains(err.Error()+out.String()+errOut.String(), "pca_secret") {
				t.Fatal("the admin token was printed")
			}
		})
	}
}
