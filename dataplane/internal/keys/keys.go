// Package keys provides the upstream key sources a deployment can name: File (dev
// only: a file's trimmed content) and None (self-hosted upstreams that take no key).
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
	"time"
)

// maxKeyFileSize bounds how much of a key file is read; real keys are far shorter.
const maxKeyFileSize = 64 << 10

// None is the key source of upstreams that take no key. Its Key is always "".
type None struct{}

// Key returns "", meaning "send no Authorization header".
func (None) Key(context.Context) (string, error) { return "", nil }

// File reads the key from a file and re-reads it whenever the file's modification
// time or size changes, so a rotated dev key is picked up without a restart. It is
// safe for concurrent use.
type File struct {
	path string

	mu      sync.Mutex // guards the fields below
	modTime time.Time
	size    int64
	key     string
}

// NewFile returns a source reading path. The file is read on first use.
func NewFile(path string) *File { return &File{path: path} }

// Key returns the trimmed content of the file. An empty or unreadable file is an
// error that names the path, never the content.
func (f *File) Key(context.Context) (string, error) {
	fi, err := os.Stat(f.path)
	if err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.key != "" && fi.ModTime().Equal(f.modTime) && fi.Size() == f.size {
		return f.key, nil
	}
	if fi.Size() > maxKeyFileSize {
		return "", fmt.Errorf("key file %s: larger than %d bytes", f.path, maxKeyFileSize)
	}
	raw, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("key file: %w", err)
	}
	key := strings.TrimSpace(string(raw))
	if key == "" {
		return "", fmt.Errorf("key file %s: empty", f.path)
	}
	f.key, f.modTime, f.size = key, fi.ModTime(), fi.Size()
	return key, nil
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
