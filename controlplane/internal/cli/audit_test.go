package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive/chain"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/audit"
)

// archive stores n events of region straight into the control plane's database, as
// its ingest would.
func archive(t *testing.T, dbURL, region string, n int, t0 time.Time) {
	t.Helper()
	st, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var batch []store.AuditEvent
	for i := range n {
		e := audit.Event{TS: t0.Add(time.Duration(i) * time.Second), RequestID: fmt.Sprintf("%s-%d", region, i), Region: region,
			ClientID: fmt.Sprintf("client-%d", i%2), Operation: "chat", Model: "gpt-4o", TokensIn: int64(100 + i), Status: 200}
		b, err := chain.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		batch = append(batch, store.AuditEvent{Event: e, JSON: b})
	}
	if _, err := st.AppendAudit(context.Background(), region, batch); err != nil {
		t.Fatal(err)
	}
}

func TestAuditExportAndVerify(t *testing.T) {
	a, cfg := controlPlane(t)
	c := cliFor(t, a, cfg)
	t0 := time.Date(2026, 4, 14, 20, 0, 0, 0, time.UTC)
	archive(t, cfg.DatabaseURL, "eu", 40, t0)
	archive(t, cfg.DatabaseURL, "us", 10, t0)
	dir := t.TempDir()
	rangeArgs := []string{"--from", "2026-04-14T00:00:00Z", "--to", "2026-04-15T00:00:00Z"}

	for _, format := range []string{"ndjson", "csv"} {
		t.Run(format, func(t *testing.T) {
			file := filepath.Join(dir, "eu."+format)
			_, errOut, err := c.run(append([]string{"audit", "export", "--region", "eu", "--format", format, "-o", file}, rangeArgs...)...)
			if err != nil || !strings.Contains(errOut, "exported 40 events of region eu") {
				t.Fatalf("export: %v\n%s", err, errOut)
			}
			if out := c.mustRun("audit", "verify", file); !strings.HasPrefix(out, "OK: ") ||
				!strings.Contains(out, "events: 40, seq 1 to 40, an unbroken piece") || !strings.Contains(out, "the last event is the head") {
				t.Fatalf("verify: %s", out)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(data), `us-`) {
				t.Fatal("the eu export holds us events")
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			first := 0 // index of the first event line
			if format == "csv" {
				first = 1
			}
			tampered := map[string][]string{
				"changed field": replaceIn(lines, first+5, "gpt-4o", "gpt-4"),
				"removed line":  append(append([]string{}, lines[:first+7]...), lines[first+8:]...),
				"swapped pair":  swapped(lines, first+10),
			}
			for name, ls := range tampered {
				bad := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+"."+format)
				if err := os.WriteFile(bad, []byte(strings.Join(ls, "\n")+"\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				out, _, err := c.run("audit", "verify", bad)
				if err == nil || !strings.Contains(err.Error(), "verification failed at line ") || out != "" {
					t.Errorf("%s: verify said %q, err %v", name, out, err)
				}
			}
		})
	}

	// To stdout, one client.
	out := c.mustRun(append([]string{"audit", "export", "--region", "eu", "--client", "client-1"}, rangeArgs...)...)
	if n := strings.Count(out, "\n"); n != 21 || strings.Contains(out, `"client_id":"client-0"`) {
		t.Fatalf("client export: %d lines\n%s", n, out)
	}
	var stdout, stderr bytes.Buffer
	err := Run(context.Background(), []string{"audit", "verify", "-"}, IO{Stdin: strings.NewReader(out), Stdout: &stdout, Stderr: &stderr},
		func(string) string { return "" })
	if err != nil || !strings.Contains(stdout.String(), "OK: stdin, ndjson export of region eu, client client-1") {
		t.Fatalf("verify -: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	// The server's validation reaches the user as field errors.
	_, _, err = c.run("audit", "export", "--region", "eu", "--from", "2026-04-15T00:00:00Z", "--to", "2026-04-14T00:00:00Z", "-o", filepath.Join(dir, "x"))
	if apiErr, ok := errors.AsType[*APIError](err); !ok || apiErr.Code != apierr.ValidationFailed || !strings.Contains(err.Error(), "to: must be after from") {
		t.Fatalf("to before from: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed export left a file")
	}
	for _, args := range [][]string{
		{"audit", "export", "--region", "eu"},
		{"audit", "verify"},
		{"audit", "verify", "a", "b"},
		{"audit", "erase"},
	} {
		if _, _, err := c.run(args...); !errors.Is(err, ErrUsage) {
			t.Errorf("portcullis %q: err %v, want a usage error", args, err)
		}
	}
	if _, _, err := c.run("audit", "verify", filepath.Join(dir, "missing")); err == nil {
		t.Error("verify of a missing file succeeded")
	}
}

func replaceIn(lines []string, i int, old, new string) []string {
	out := append([]string{}, lines...)
	out[i] = strings.Replace(out[i], old, new, 1)
	return out
}

func swapped(lines []string, i int) []string {
	out := append([]string{}, lines...)
	out[i], out[i+1] = out[i+1], out[i]
	return out
}
