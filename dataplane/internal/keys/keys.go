// Package keys provides the upstream key sources a deployment can name: File (a
// file's trimmed content, under the key directory) and None (self-hosted upstreams
// that take no key).
// Vault-backed sources arrive with the keys issue; until then Unavailable stands in
// for them and refuses every request with a clear reason.
//
// Key values are never logged and never appear in an error message.
package keys

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// maxKeyFileSize bounds how much of a key file is read; real keys are far shorter.
const maxKeyFileSize = 64 << 10

// None is the key source of upstreams that take no key. Its Key is always "".
type None struct{}

// Key returns "", meaning "send no Authorization header".
func (None) Key(context.Context) (string, error) { return "", nil }

// File reads the key from a file and re-reads it whenever the file's modification
// time or size changes, so a rotated dev key is picked up without a restart. The
// file is looked at again (path, mode, modification time, size) at most once per
// FileOptions.Recheck, not on every request: a change, a rotated key or a refused
// mode, is seen within that time. It is safe for concurrent use.
//
// The file must lie under FileOptions.Dir (PORTCULLIS_KEY_DIR), symlinks resolved,
// unless AllowAnyDir, and it must be readable by its owner only (see
// shared/secretfile): a key_path pointing at another secret of the worker (its
// Vault token, its NATS credentials) would send that secret upstream.
type File struct {
	path string
	opts FileOptions

	// checked is the key last read and until when it is served without looking at
	// the file; nil before the first read and after a failed one.
	checked atomic.Pointer[checkedKey]

	mu      sync.Mutex // guards the fields below
	real    string     // the file read, symlinks resolved
	modTime time.Time
	size    int64
	key     string
}

// FileOptions say which key files a File may read.
type FileOptions struct {
	// Dir is the directory key files must lie under; "" refuses every key file
	// unless AllowAnyDir.
	Dir string
	// AllowAnyDir lets the file be anywhere (PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE,
	// development only).
	AllowAnyDir bool
	// Recheck is how long a key read is served before the file is looked at
	// again; zero means DefaultFileRecheck, a negative value every call.
	Recheck time.Duration
}

// DefaultFileRecheck is the default of FileOptions.Recheck.
const DefaultFileRecheck = time.Second

// checkedKey is a key read from the file and the time until which it is served
// without looking at the file again.
type checkedKey struct {
	key   string
	until time.Time
}

// Settings named by File's refusals.
const (
	SettingKeyDir     = "PORTCULLIS_KEY_DIR"
	SettingAnyKeyFile = "PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE"
)

// NewFile returns a source reading path within o's rules. The file is read on
// first use.
func NewFile(path string, o FileOptions) *File { return &File{path: path, opts: o} }

// Key returns the trimmed content of the file. A file outside the key directory, a
// file others can read, and an empty or unreadable file are errors that name the
// path and the setting, never the content.
func (f *File) Key(context.Context) (string, error) {
	now := time.Now()
	if c := f.checked.Load(); c != nil && now.Before(c.until) {
		return c.key, nil
	}
	key, err := f.check()
	if err != nil {
		f.checked.Store(nil)
		return "", err
	}
	recheck := f.opts.Recheck
	if recheck == 0 {
		recheck = DefaultFileRecheck
	}
	f.checked.Store(&checkedKey{key: key, until: now.Add(recheck)})
	return key, nil
}

// check looks at the file and returns its key, read again if it changed.
func (f *File) check() (string, error) {
	path, err := f.resolve()
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	if err := secretfile.CheckInfo("key_path", f.path, fi); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.key != "" && path == f.real && fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return f.key, nil
	}
	if fi.Size() > maxKeyFileSize {
		return "", fmt.Errorf("key file %s: larger than %d bytes", f.path, maxKeyFileSize)
	}
	raw, err := secretfile.Read("key_path", path, maxKeyFileSize)
	if err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	key := strings.TrimSpace(string(raw))
	if key == "" {
		return "", fmt.Errorf("key file %s: empty", f.path)
	}
	f.key, f.real, f.modTime, f.size = key, path, fi.ModTime(), fi.Size()
	return key, nil
}

// resolve is the path to read: f.path itself with AllowAnyDir, else f.path with its
// symlinks resolved, once it is known to lie under the key directory.
func (f *File) resolve() (string, error) {
	if f.opts.AllowAnyDir {
		return f.path, nil
	}
	if f.opts.Dir == "" {
		return "", fmt.Errorf("%w: key file %s refused: this worker has no %s, the directory key files must lie under "+
			"(set it; %s=true lifts this, in development only)", ErrUnavailable, f.path, SettingKeyDir, SettingAnyKeyFile)
	}
	real, err := secretfile.ResolveWithin(f.opts.Dir, f.path)
	switch {
	case errors.Is(err, secretfile.ErrOutsideDir):
		return "", fmt.Errorf("%w: key file %s refused: not under %s (%s), symlinks resolved (%s=true lifts this, in development only)",
			ErrUnavailable, f.path, SettingKeyDir, f.opts.Dir, SettingAnyKeyFile)
	case err != nil:
		return "", fmt.Errorf("key file: %w", err)
	}
	return real, nil
}

// Unavailable is a key source this build cannot serve yet. Every Key call fails
// with an error that says why.
type Unavailable struct {
	Source string // the deployment's key_source, e.g. "vault"
	Reason string // e.g. "key source vault arrives with the keys issue"
}

// ErrUnavailable is in the chain of every error Unavailable.Key returns.
var ErrUnavailable = errors.New("key source unavailable")

// Key always fails.
func (u Unavailable) Key(context.Context) (string, error) {
	return "", fmt.Errorf("%w: %s: %s", ErrUnavailable, u.Source, u.Reason)
}
