package vaulttest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSourceHashNamesTheSources(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	a, err := sourceHash(root + "/" + launcherDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sourceHash(root + "/" + launcherDir)
	if err != nil {
		t.Fatal(err)
	}
	if a != b || len(a) != 16 {
		t.Errorf("sourceHash gave %q then %q, want the same 16 hex digits", a, b)
	}
	if _, err := sourceHash(t.TempDir()); err == nil {
		t.Error("sourceHash of a directory without sources: no error")
	}
}

func TestPruneStaleKeepsRecentAndCurrent(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-staleAfter - time.Hour)
	files := []struct {
		name   string
		mtime  time.Time
		remain bool
	}{
		{name: "vaultdev-current", mtime: old, remain: true},
		{name: "vaultdev-stale", mtime: old, remain: false},
		{name: "vaultdev-recent", mtime: time.Now(), remain: true},
		{name: "vaultdev-building.tmp-42", mtime: old, remain: true},
		{name: "vaultdev.lock", mtime: old, remain: true},
	}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.mtime, f.mtime); err != nil {
			t.Fatal(err)
		}
	}
	pruneStale(dir, filepath.Join(dir, "vaultdev-current"))
	for _, f := range files {
		_, err := os.Stat(filepath.Join(dir, f.name))
		if got := err == nil; got != f.remain {
			t.Errorf("%s: remains %t, want %t", f.name, got, f.remain)
		}
	}
}
