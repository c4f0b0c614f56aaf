package keys_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/internal/keys"
)

func TestFileRereadsOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	write := func(content string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour)
	write("  first-key\n", base)
	src := keys.NewFile(path)

	tests := []struct {
		name    string
		content string
		mtime   time.Time
		want    string
	}{
		{name: "initial read is trimmed", want: "first-key"},
		// Same length as "  first-key\n", so only the mtime could tell them apart.
		{name: "same mtime and size is served from memory", content: "  other-kez\n", mtime: base, want: "first-key"},
		{name: "new mtime re-reads", content: "second-key", mtime: base.Add(time.Minute), want: "second-key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.content != "" {
				write(tt.content, tt.mtime)
			}
			got, err := src.Key(context.Background())
			if err != nil {
				t.Fatalf("Key: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Key = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFileErrorsNeverContainTheKey(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{name: "missing file", path: filepath.Join(dir, "missing")},
		{name: "empty file", path: empty},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := keys.NewFile(tt.path).Key(context.Background())
			if err == nil {
				t.Fatal("Key succeeded, want an error")
			}
			if !strings.Contains(err.Error(), "key file") {
				t.Fatalf("error %q does not say it is about the key file", err)
			}
		})
	}
}

func TestNoneAndUnavailable(t *testing.T) {
	if k, err := (keys.None{}).Key(context.Background()); err != nil || k != "" {
		t.Fatalf("None.Key = %q, %v; want empty, nil", k, err)
	}
	_, err := keys.Unavailable{Source: "vault", Reason: "key source vault arrives with the keys issue"}.Key(context.Background())
	if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "arrives with the keys issue") {
		t.Fatalf("Unavailable.Key error = %v", err)
	}
}
