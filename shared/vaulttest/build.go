package vaulttest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// launcherDir is where the launcher module lives, relative to the repository root.
const launcherDir = "tests/vaultdev"

// maxBuildOutput bounds how much of a failed build's output goes into the error.
const maxBuildOutput = 16 << 10

// installHint tells what to do when the launcher cannot be built; callers add their
// own alternatives (a running Vault to use).
const installHint = "install the Go toolchain named in go.work (https://go.dev/dl/) with network access " +
	"to the Go module proxy so " + launcherDir + " can be built (`make vaultdev` builds it by hand)"

// testHint is the tests' alternative to a launcher.
const testHint = "the tests can use a running Vault instead: set " + EnvAddr + " and " + EnvToken

// buildLauncher is BuildLauncher for a test, which it fails when there is no launcher.
func buildLauncher(t testing.TB) string {
	t.Helper()
	bin, err := BuildLauncher(t.Logf)
	if err != nil {
		t.Fatalf("vaulttest: %v\n%s", err, testHint)
	}
	return bin
}

// BuildLauncher returns the path of the launcher binary of tests/vaultdev, building it
// first when the cache has no binary for the launcher's current sources: with
// `GOWORK=off go build`, into the user's cache directory (portcullis/vaultdev-<hash>,
// the hash of the Go version and the launcher's sources). A cold build downloads
// Vault's modules and takes minutes; logf, when not nil, is told when a build starts.
// Concurrent callers, in this process or in others, wait on a file lock while one of
// them builds. The repository root is found from the working directory up. The error
// says what to install.
func BuildLauncher(logf func(format string, args ...any)) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	src := filepath.Join(root, filepath.FromSlash(launcherDir))
	hash, err := sourceHash(src)
	if err != nil {
		return "", err
	}
	cacheDir, err := binCacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cacheDir, "vaultdev-"+hash)
	if _, err := os.Stat(bin); err == nil {
		markUsed(bin)
		return bin, nil
	}

	unlock, err := lockFile(filepath.Join(cacheDir, "vaultdev.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		markUsed(bin)
		return bin, nil // another process built it while we waited for the lock
	}

	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no `go` command on PATH to build the Vault launcher in %s (%v): %s", launcherDir, err, installHint)
	}
	if logf != nil {
		logf("building the Vault launcher in %s into %s (once per change of its sources; a cold build downloads Vault's modules and takes minutes)", launcherDir, bin)
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	cmd := exec.Command(goBin, "build", "-buildvcs=false", "-o", tmp, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("build the Vault launcher (GOWORK=off go build in %s): %v\n%s\n%s", launcherDir, err, tail(out, maxBuildOutput), installHint)
	}
	if err := os.Rename(tmp, bin); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("install the Vault launcher binary: %w", err)
	}
	pruneStale(cacheDir, bin)
	return bin, nil
}

// staleAfter is how long a cached launcher binary may go unused before a build of
// another one removes it (each is about 100 MB).
const staleAfter = 7 * 24 * time.Hour

// markUsed sets bin's modification time to now, so pruneStale keeps it.
func markUsed(bin string) {
	now := time.Now()
	_ = os.Chtimes(bin, now, now)
}

// pruneStale removes the launcher binaries in dir, other than keep, that have not been
// used for staleAfter. It is best effort and runs under the build lock.
func pruneStale(dir, keep string) {
	old, err := filepath.Glob(filepath.Join(dir, "vaultdev-*"))
	if err != nil {
		return
	}
	for _, f := range old {
		if f == keep || strings.Contains(filepath.Base(f), ".tmp-") {
			continue
		}
		if fi, err := os.Stat(f); err == nil && time.Since(fi.ModTime()) > staleAfter {
			_ = os.Remove(f)
		}
	}
}

// repoRoot walks up from the working directory to the directory holding go.work.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for dir := wd; ; {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("find repository root: no go.work in %s or any parent", wd)
		}
		dir = parent
	}
}

// sourceHash hashes the Go toolchain version and the launcher's go.mod, go.sum and .go
// files, naming the binary those sources build.
func sourceHash(src string) (string, error) {
	goFiles, err := filepath.Glob(filepath.Join(src, "*.go"))
	if err != nil {
		return "", fmt.Errorf("list launcher sources: %w", err)
	}
	if len(goFiles) == 0 {
		return "", fmt.Errorf("no launcher sources in %s", src)
	}
	sort.Strings(goFiles)
	files := append([]string{filepath.Join(src, "go.mod"), filepath.Join(src, "go.sum")}, goFiles...)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", runtime.Version())
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("hash launcher sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// binCacheDir is the directory that holds built launchers: portcullis/ under the user's
// cache directory, or under the temporary directory when there is none.
func binCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	name := "portcullis"
	if err != nil { // no home: a directory of this user's own in the shared temp dir
		base, name = os.TempDir(), fmt.Sprintf("portcullis-%d", os.Getuid())
	}
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create launcher cache dir: %w", err)
	}
	// Binaries are run from here: refuse a directory someone else could write to.
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("launcher cache dir: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || (ok && int(st.Uid) != os.Getuid()) || fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("launcher cache dir %s: not a directory of this user's that only it can write to; remove it", dir)
	}
	return dir, nil
}

// lockFile takes an exclusive lock on path, waiting for it, and returns its release.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open launcher build lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// tail returns at most the last n bytes of b, marked when cut.
func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) <= n {
		return s
	}
	return "[…]" + s[len(s)-n:]
}
