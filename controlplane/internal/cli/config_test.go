package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyDiffExport: diff of the seed's blocks lists the changes and answers
// ErrChanges; apply applies them as one policy version; diff and apply then find
// no changes; export, applied with --dry-run, is no change; a file with problems
// prints each as FILE:LINE:COLUMN and applies nothing.
func TestApplyDiffExport(t *testing.T) {
	c := newCLI(t)
	seed := "../gatewayconfig/testdata/seed.yaml"

	out, _, err := c.run("diff", "-f", seed)
	if !errors.Is(err, ErrChanges) || !strings.Contains(out, "+ create tier tier_premium") ||
		!strings.Contains(out, "+ create deployment openai-fallback-eu") || !strings.Contains(out, "+ create fallback-map openai.gpt-4o-mini") {
		t.Fatalf("diff of the seed: %v\n%s", err, out)
	}
	out = c.mustRun("apply", "-f", seed)
	if !strings.Contains(out, "+ create fallback-map openai.gpt-4o") || !strings.Contains(out, "applied: policy version ") {
		t.Fatalf("apply of the seed:\n%s", out)
	}
	if out := c.mustRun("diff", "-f", seed); !strings.HasPrefix(out, "no changes") {
		t.Fatalf("diff after apply:\n%s", out)
	}
	if out := c.mustRun("apply", "-f", seed); !strings.HasPrefix(out, "no changes") || strings.Contains(out, "applied") {
		t.Fatalf("a second apply:\n%s", out)
	}
	exported := filepath.Join(t.TempDir(), "export.yaml")
	c.mustRun("export", "-o", exported)
	if out := c.mustRun("apply", "-f", exported, "--dry-run", "--prune"); !strings.HasPrefix(out, "no changes") || strings.Contains(out, "--prune would") {
		t.Fatalf("export | apply --dry-run --prune:\n%s", out)
	}
	if out := c.mustRun("export", "--format", "json"); !strings.HasPrefix(out, `{"apiVersion":"portcullis/v1"`) {
		t.Fatalf("export as JSON: %.200s", out)
	}

	// --prune counts what a file leaves out as deletions.
	small := filepath.Join(t.TempDir(), "small.yaml")
	if err := os.WriteFile(small, []byte("apiVersion: portcullis/v1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _, err := c.run("diff", "-f", small); err != nil || !strings.Contains(out, "--prune would delete them") || strings.Contains(out, "- delete") {
		t.Fatalf("diff of a small file: %v\n%s", err, out)
	}
	if out, _, err := c.run("diff", "-f", small, "--prune"); !errors.Is(err, ErrChanges) || !strings.Contains(out, "- delete tier tier_premium") {
		t.Fatalf("diff --prune of a small file: %v\n%s", err, out)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: portcullis/v1\nregion: eu\nupstream_providers:\n  openai:\n    tls:\n      verify: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.run("apply", "-f", bad)
	if err == nil || !strings.Contains(err.Error(), bad+":6:15: upstream_providers.openai.tls.verify: never:") {
		t.Fatalf("apply of a file with a problem: %v", err)
	}
	if _, _, err := c.run("apply"); !errors.Is(err, ErrUsage) {
		t.Fatalf("apply without -f: %v", err)
	}
}
