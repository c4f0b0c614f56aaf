// Package secretfile reads files that hold secrets (tokens, keys, credentials) and
// refuses those that other users can read. It is the one check every Portcullis
// binary applies to its secret files: the admin token, the audit key, Vault's token
// and secret id, provider key files, the webhook secret, NATS credentials and signing
// keys.
//
// The rule: a secret file must not be readable (or writable) by others, nor by its
// group, with one exception taken from PostgreSQL's rule for its server key: a file
// owned by root may let its group read it (mode 0440 or 0640 at most). That is how
// Kubernetes mounts a Secret volume in a pod with an fsGroup: root-owned, group
// fsGroup, and group-readable whatever the volume's defaultMode says. Ownership by
// root means nobody but root chose that group.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrTooOpen is in the chain of every error about a file that others may read.
var ErrTooOpen = errors.New("readable by group or others")

// ModeError reports a secret file whose permissions let others read it.
type ModeError struct {
	Setting string      // the setting that names the file, e.g. PORTCULLIS_AUDIT_KEY_FILE
	Path    string      // the file
	Mode    fs.FileMode // its permission bits
}

func (e *ModeError) Error() string {
	return fmt.Sprintf("%s: %s has mode %04o: a file holding a secret must not be readable by group or others "+
		"(chmod 600 %s, or 400; a root-owned file may be 440 for its group, as Kubernetes mounts Secrets)",
		e.Setting, e.Path, uint32(e.Mode.Perm()), e.Path)
}

// Unwrap makes errors.Is(err, ErrTooOpen) true.
func (e *ModeError) Unwrap() error { return ErrTooOpen }

// Allowed reports whether a secret file with permission bits mode, owned by uid, is
// private enough: nothing for others, and nothing for the group unless root owns
// the file and the group may only read it.
func Allowed(mode fs.FileMode, uid uint32) bool {
	perm := mode.Perm()
	if perm&0o007 != 0 {
		return false
	}
	if perm&0o070 == 0 {
		return true
	}
	return uid == 0 && perm&0o030 == 0
}

// Check refuses the file at path (following symlinks, as a read does) when it is
// not a regular file, or when others may read it (see Allowed). setting names the
// configuration that names the file, for the error. A file that does not exist is
// an error too (wrapping fs.ErrNotExist).
func Check(setting, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("%s: %w", setting, err)
	}
	return CheckInfo(setting, path, fi)
}

// CheckInfo is Check on the FileInfo of path, for a caller that has it already.
func CheckInfo(setting, path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %s is not a regular file", setting, path)
	}
	uid := ^uint32(0) // an unknown owner gets no exception for root
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid = st.Uid
	}
	if !Allowed(fi.Mode(), uid) {
		return &ModeError{Setting: setting, Path: path, Mode: fi.Mode().Perm()}
	}
	return nil
}

// Read checks the file at path as Check does and returns its content, at most max
// bytes (a larger file is an error; max <= 0 means 1 MiB). Errors name setting and
// the path, never the content. The permissions are checked on the open file, so a
// file swapped between the check and the read is still the one checked.
func Read(setting, path string, max int64) ([]byte, error) {
	if max <= 0 {
		max = 1 << 20
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setting, err)
	}
	if err := CheckInfo(setting, path, fi); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", setting, path, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %s is larger than %d bytes", setting, path, max)
	}
	return data, nil
}

// ErrOutsideDir is in the chain of every error about a path outside its directory.
var ErrOutsideDir = errors.New("not under the directory")

// Within checks, lexically (nothing is read: the file may live on another host),
// that path names a file inside dir: both absolute, path free of "." and ".."
// elements and doubled slashes (no escape to resolve, no second spelling of a
// path), and strictly below dir. The control plane checks key paths with it;
// the data planes also resolve symlinks (ResolveWithin).
func Within(dir, path string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("the directory %q is not an absolute path", dir)
	}
	if !filepath.IsAbs(path) {
		return fmt.Errorf("%w %s: %q is not an absolute path", ErrOutsideDir, dir, path)
	}
	for _, el := range strings.Split(path[1:], "/") {
		if el == ".." || el == "." || el == "" {
			return fmt.Errorf("%w %s: %q has a %q element; give the plain path", ErrOutsideDir, dir, path, el)
		}
	}
	rel, err := filepath.Rel(filepath.Clean(dir), path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%w %s: %s", ErrOutsideDir, dir, path)
	}
	return nil
}

// ResolveWithin checks path lexically (Within), then resolves the symlinks of both
// dir and path on this host and checks that the file they lead to is still inside
// the directory dir leads to, so a link inside dir cannot point outside it. It
// returns the resolved path, to be read instead of path. A Kubernetes Secret
// volume's links (key -> ..data/key -> ..2024_01_01_00_00_00.0/key) stay inside
// the mount and pass.
func ResolveWithin(dir, path string) (string, error) {
	if err := Within(dir, path); err != nil {
		return "", err
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", fmt.Errorf("the directory: %w", err)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	if err := Within(realDir, real); err != nil {
		return "", fmt.Errorf("%w %s: %s resolves to %s, outside it", ErrOutsideDir, dir, path, real)
	}
	return real, nil
}
