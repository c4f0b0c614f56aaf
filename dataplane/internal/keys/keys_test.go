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
	src := keys.NewFile(path, keys.FileOptions{Dir: filepath.Dir(path), Recheck: -1})

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

// TestFileRecheck: within Recheck the key read is served without looking at the
// file; after it, a changed file is read again; a failed read is not remembered.
func TestFileRecheck(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := os.WriteFile(path, []byte("first-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	held := keys.NewFile(path, keys.FileOptions{Dir: dir, Recheck: time.Hour})
	quick := keys.NewFile(path, keys.FileOptions{Dir: dir, Recheck: time.Millisecond})
	for _, src := range []*keys.File{held, quick} {
		if k, err := src.Key(ctx); err != nil || k != "first-key" {
			t.Fatalf("first read: %q, %v", k, err)
		}
	}
	if err := os.WriteFile(path, []byte("second-key-longer"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := held.Key(ctx); err != nil || k != "first-key" {
		t.Fatalf("within Recheck: %q, %v; want the key read before", k, err)
	}
	time.Sleep(5 * time.Millisecond)
	if k, err := quick.Key(ctx); err != nil || k != "second-key-longer" {
		t.Fatalf("after Recheck: %q, %v; want the new key", k, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if _, err := quick.Key(ctx); err == nil {
		t.Fatal("a removed file after Recheck: no error")
	}
	if err := os.WriteFile(path, []byte("third-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if k, err := quick.Key(ctx); err != nil || k != "third-key" {
		t.Fatalf("after a failed read: %q, %v; want the file read at once", k, err)
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
			_, err := keys.NewFile(tt.path, keys.FileOptions{Dir: dir}).Key(context.Background())
			if err == nil {
				t.Fatal("Key succeeded, want an error")
			}
			if !strings.Contains(err.Error(), "key file") {
				t.Fatalf("error %q does not say it is about the key file", err)
			}
		})
	}
}

// TestFileOnlyUnderTheKeyDirectory: a key file outside PORTCULLIS_KEY_DIR (directly,
// through "..", or through a symlink), or any key file without a key directory, is
// refused with an error naming the setting, unless the dev flag allows any file;
// a file group or others can read is refused either way.
func TestFileOnlyUnderTheKeyDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "keys")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(path string, perm os.FileMode) string {
		t.Helper()
		if err := os.WriteFile(path, []byte("canary-key"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, perm); err != nil {
			t.Fatal(err)
		}
		return path
	}
	inside := write(filepath.Join(dir, "openai"), 0o600)
	outside := write(filepath.Join(root, "vault-token"), 0o600)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	readable := write(filepath.Join(dir, "readable"), 0o644)

	if k, err := keys.NewFile(inside, keys.FileOptions{Dir: dir}).Key(context.Background()); err != nil || k != "canary-key" {
		t.Fatalf("a key file under the directory: %q, %v", k, err)
	}
	for _, tt := range []struct {
		name, path string
		o          keys.FileOptions
		want       string
	}{
		{"outside", outside, keys.FileOptions{Dir: dir}, "PORTCULLIS_KEY_DIR"},
		{"dot-dot escape", filepath.Join(dir, "..", "vault-token"), keys.FileOptions{Dir: dir}, "PORTCULLIS_KEY_DIR"},
		{"symlink out", link, keys.FileOptions{Dir: dir}, "PORTCULLIS_KEY_DIR"},
		{"no key directory", inside, keys.FileOptions{}, "PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE"},
		{"readable by others", readable, keys.FileOptions{Dir: dir}, "0644"},
		{"readable by others, dev flag", readable, keys.FileOptions{AllowAnyDir: true}, "0644"},
	} {
		_, err := keys.NewFile(tt.path, tt.o).Key(context.Background())
		if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want ErrUnavailable naming %q", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "canary") {
			t.Errorf("%s: the error shows the key", tt.name)
		}
	}
	if k, err := keys.NewFile(outside, keys.FileOptions{AllowAnyDir: true}).Key(context.Background()); err != nil || k != "canary-key" {
		t.Fatalf("with the dev flag: %q, %v", k, err)
	}
	// A key already read stops being served once others can read it.
	src := keys.NewFile(inside, keys.FileOptions{Dir: dir, Recheck: -1})
	if _, err := src.Key(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(inside, 0o640); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 { // a root-owned file may be group-readable (Kubernetes Secrets)
		if err := os.Chown(inside, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.Key(context.Background()); !errors.Is(err, keys.ErrUnavailable) {
		t.Fatalf("after chmod 640: err = %v", err)
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
