package secretfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

func TestAllowed(t *testing.T) {
	tests := []struct {
		mode fs.FileMode
		uid  uint32
		want bool
	}{
		{0o600, 1000, true},
		{0o400, 1000, true},
		{0o700, 1000, true},
		{0o640, 1000, false}, // group may read a file root does not own
		{0o440, 1000, false},
		{0o604, 1000, false},
		{0o644, 1000, false},
		{0o602, 1000, false}, // others may write
		{0o620, 1000, false},
		{0o440, 0, true}, // Kubernetes: root-owned, group fsGroup
		{0o640, 0, true},
		{0o660, 0, false}, // the group may write
		{0o650, 0, false},
		{0o644, 0, false}, // others may read, even a root-owned file
		{0o444, 0, false},
	}
	for _, tt := range tests {
		if got := secretfile.Allowed(tt.mode, tt.uid); got != tt.want {
			t.Errorf("Allowed(%04o, uid %d) = %v, want %v", tt.mode, tt.uid, got, tt.want)
		}
	}
}

// write writes content to a new file of mode perm, owned by a user other than root
// when the test runs as root (so that the exception for root-owned files does not
// apply).
func write(t *testing.T, perm fs.FileMode, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(path, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestReadRefusesFilesOthersCanRead(t *testing.T) {
	for _, perm := range []fs.FileMode{0o644, 0o640, 0o604, 0o440} {
		path := write(t, perm, "hunter2-secret")
		_, err := secretfile.Read("PORTCULLIS_AUDIT_KEY_FILE", path, 0)
		if !errors.Is(err, secretfile.ErrTooOpen) {
			t.Fatalf("mode %04o: err = %v, want ErrTooOpen", perm, err)
		}
		msg := err.Error()
		for _, want := range []string{"PORTCULLIS_AUDIT_KEY_FILE", path, "chmod 600"} {
			if !strings.Contains(msg, want) {
				t.Errorf("mode %04o: error %q does not mention %q", perm, msg, want)
			}
		}
		if strings.Contains(msg, "hunter2") {
			t.Errorf("the error shows the secret: %q", msg)
		}
		if err := secretfile.Check("PORTCULLIS_AUDIT_KEY_FILE", path); !errors.Is(err, secretfile.ErrTooOpen) {
			t.Errorf("Check, mode %04o: err = %v, want ErrTooOpen", perm, err)
		}
	}
}

func TestReadPrivateFiles(t *testing.T) {
	for _, perm := range []fs.FileMode{0o600, 0o400} {
		path := write(t, perm, "the-secret\n")
		data, err := secretfile.Read("setting", path, 0)
		if err != nil {
			t.Fatalf("mode %04o: %v", perm, err)
		}
		if string(data) != "the-secret\n" {
			t.Fatalf("content %q", data)
		}
	}
	// Through a symlink (Kubernetes mounts Secrets as links into ..data/): the
	// file's own mode counts, not the link's.
	target := write(t, 0o600, "linked")
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if data, err := secretfile.Read("setting", link, 0); err != nil || string(data) != "linked" {
		t.Fatalf("through a symlink: %q, %v", data, err)
	}
}

func TestReadOtherFailures(t *testing.T) {
	dir := t.TempDir()
	if _, err := secretfile.Read("PORTCULLIS_X_FILE", filepath.Join(dir, "missing"), 0); !errors.Is(err, fs.ErrNotExist) ||
		!strings.Contains(err.Error(), "PORTCULLIS_X_FILE") {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := secretfile.Read("PORTCULLIS_X_FILE", dir, 0); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("directory: %v", err)
	}
	big := write(t, 0o600, strings.Repeat("x", 100))
	if _, err := secretfile.Read("PORTCULLIS_X_FILE", big, 10); err == nil || !strings.Contains(err.Error(), "larger than 10 bytes") {
		t.Fatalf("too large: %v", err)
	}
}

func TestWithin(t *testing.T) {
	ok := []struct{ dir, path string }{
		{"/etc/portcullis/keys", "/etc/portcullis/keys/openai-eu"},
		{"/etc/portcullis/keys/", "/etc/portcullis/keys/eu/openai"},
		{"/", "/run/key"},
	}
	for _, tt := range ok {
		if err := secretfile.Within(tt.dir, tt.path); err != nil {
			t.Errorf("Within(%q, %q) = %v", tt.dir, tt.path, err)
		}
	}
	bad := []struct{ dir, path string }{
		{"/etc/portcullis/keys", "/etc/portcullis/keys"},                // the directory itself
		{"/etc/portcullis/keys", "/etc/portcullis/keys-other/openai"},   // a sibling sharing the prefix
		{"/etc/portcullis/keys", "/etc/portcullis/keys/../vault-token"}, // an escape
		{"/etc/portcullis/keys", "/etc/portcullis/keys/a/../openai"},    // ".." even when it stays inside
		{"/etc/portcullis/keys", "/etc/portcullis/keys/./openai"},
		{"/etc/portcullis/keys", "/etc/portcullis/keys//openai"},
		{"/etc/portcullis/keys", "keys/openai"}, // relative
		{"/etc/portcullis/keys", "/var/run/secrets/token"},
		{"keys", "keys/openai"}, // a relative directory
	}
	for _, tt := range bad {
		if err := secretfile.Within(tt.dir, tt.path); err == nil {
			t.Errorf("Within(%q, %q) accepted it", tt.dir, tt.path)
		}
	}
}

func TestResolveWithinFollowsSymlinksOnlyInside(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "keys")
	data := filepath.Join(dir, "..2026_01_01")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "openai"), []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(root, "vault-token")
	if err := os.WriteFile(outside, []byte("s.token"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The layout of a Kubernetes Secret volume: key -> ..data/key, ..data -> ..<timestamp>.
	for _, l := range [][2]string{
		{"..2026_01_01", filepath.Join(dir, "..data")},
		{filepath.Join("..data", "openai"), filepath.Join(dir, "openai")},
		{outside, filepath.Join(dir, "sneaky")},
	} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	real, err := secretfile.ResolveWithin(dir, filepath.Join(dir, "openai"))
	if err != nil || real != filepath.Join(data, "openai") {
		t.Fatalf("ResolveWithin(openai) = %q, %v", real, err)
	}
	if _, err := secretfile.ResolveWithin(dir, filepath.Join(dir, "sneaky")); !errors.Is(err, secretfile.ErrOutsideDir) {
		t.Fatalf("a link to a file outside the directory: err = %v", err)
	}
	// The directory itself may be a link.
	linkedDir := filepath.Join(root, "linked")
	if err := os.Symlink(dir, linkedDir); err != nil {
		t.Fatal(err)
	}
	if _, err := secretfile.ResolveWithin(linkedDir, filepath.Join(linkedDir, "openai")); err != nil {
		t.Fatalf("through a linked directory: %v", err)
	}
}
