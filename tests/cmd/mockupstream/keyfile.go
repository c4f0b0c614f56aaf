package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// maxKeyLen bounds one key, in the file and on the control API.
const maxKeyLen = 4096

// keyFile keeps the mock's accepted keys in step with a file of keys (-accept-keys-file),
// one a line, blank lines and lines starting with '#' skipped. Before each request
// (refreshing) it looks at the file's modification time and size, and when either
// changed it re-reads the file: it accepts the keys new to the file, then revokes the
// keys gone from it. A file that cannot be read, holds no key or a malformed line is
// ignored, with a warning, and the keys last read stay; so that a file rewritten in
// place never leaves a moment with no key, an empty file does not revoke every key
// (use POST /mock/keys {"revoke":...} for that). Keys accepted otherwise (the
// require-key-file, the admin API, the control API) are left alone unless the file
// named them and dropped them. It is safe for concurrent use; a nil *keyFile does
// nothing.
type keyFile struct {
	path string
	mock *mockupstream.Server
	log  *slog.Logger

	mu         sync.Mutex // guards the fields below
	stamp      fileStamp  // of the version last read, good or bad
	statFailed bool       // the last look failed, and was logged
	keys       map[string]bool
}

// fileStamp tells one version of a file from another.
type fileStamp struct {
	modNanos int64
	size     int64
}

// loadKeyFile reads path and makes mock accept its keys; a file that cannot be read
// or holds no key is an error. It returns nil for an empty path.
func loadKeyFile(path string, mock *mockupstream.Server, log *slog.Logger) (*keyFile, error) {
	if path == "" {
		return nil, nil
	}
	f := &keyFile{path: path, mock: mock, log: log}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("accept-keys-file: %w", err)
	}
	keys, err := readKeys(path)
	if err != nil {
		return nil, fmt.Errorf("accept-keys-file %q: %w", path, err)
	}
	f.stamp = stampOf(info)
	f.applyLocked(keys)
	return f, nil
}

func stampOf(info os.FileInfo) fileStamp {
	return fileStamp{modNanos: info.ModTime().UnixNano(), size: info.Size()}
}

// refreshing returns next, which first refreshes the keys.
func (f *keyFile) refreshing(next http.Handler) http.Handler {
	if f == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.refresh()
		next.ServeHTTP(w, r)
	})
}

// refresh re-reads the file if it changed since it was last read.
func (f *keyFile) refresh() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	info, err := os.Stat(f.path)
	if err != nil {
		if !f.statFailed {
			f.statFailed = true
			f.log.Warn("accept-keys-file cannot be read; keeping the keys last read", "error", err.Error())
		}
		return
	}
	f.statFailed = false
	stamp := stampOf(info)
	if stamp == f.stamp {
		return
	}
	f.stamp = stamp // a bad version is not re-read until it changes
	keys, err := readKeys(f.path)
	if err != nil {
		f.log.Warn("accept-keys-file ignored; keeping the keys last read", "path", f.path, "error", err.Error())
		return
	}
	f.applyLocked(keys)
}

// applyLocked accepts the keys new to the file, then revokes the ones it dropped, and
// logs the counts. f.mu is held, or f is not shared yet.
func (f *keyFile) applyLocked(keys map[string]bool) {
	var added, removed int
	for k := range keys {
		if !f.keys[k] {
			f.mock.AcceptKey(k)
			added++
		}
	}
	for k := range f.keys {
		if !keys[k] {
			f.mock.RevokeKey(k)
			removed++
		}
	}
	f.keys = keys
	f.log.Info("accept-keys-file read", "path", f.path, "keys", len(keys), "added", added, "removed", removed)
}

// readKeys reads a file of keys. Errors name lines by number, never their content.
func readKeys(path string) (map[string]bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys := make(map[string]bool)
	var problems []error
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if problem := checkKey(line); problem != "" {
			problems = append(problems, fmt.Errorf("line %d: %s", i+1, problem))
			continue
		}
		keys[line] = true
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	if len(keys) == 0 {
		return nil, errors.New("no key: want one key a line")
	}
	return keys, nil
}

// checkKey returns what is wrong with key, "" if nothing: a key is 1 to maxKeyLen
// printable ASCII characters without spaces, as an HTTP header carries it.
func checkKey(key string) string {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Sprintf("a key must be 1 to %d characters long", maxKeyLen)
	}
	for i := range len(key) {
		if key[i] <= ' ' || key[i] > '~' {
			return "a key must be printable ASCII without spaces"
		}
	}
	return ""
}
