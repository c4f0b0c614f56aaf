package vaulttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// readyTimeout bounds the wait for the launcher's ready line.
const readyTimeout = 60 * time.Second

// stopTimeout bounds the wait for the launcher to exit after SIGTERM before it is killed.
const stopTimeout = 15 * time.Second

// maxStderr is how much of the launcher's stderr is kept for failure messages.
const maxStderr = 64 << 10

// readyLine is the JSON line the launcher prints on stdout once it serves.
type readyLine struct {
	Addr      string `json:"addr"`
	TokenFile string `json:"token_file"`
	RootToken string `json:"root_token"`
}

// launcher is one running launcher process.
type launcher struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *tailBuffer
	done   chan error // receives cmd.Wait's result once
	ready  chan []byte

	stopOnce sync.Once
	waitErr  error
}

// startLauncher runs bin with its root token written to a file in a temporary
// directory, waits for its ready line, and registers its stop with t.Cleanup.
func startLauncher(t testing.TB, bin string) *Vault {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "root-token")
	l, err := spawn(bin, "-listen", "127.0.0.1:0", "-token-file", tokenFile)
	if err != nil {
		t.Fatalf("vaulttest: start the Vault launcher: %v", err)
	}
	t.Cleanup(func() {
		if err := l.stop(); err != nil {
			t.Errorf("vaulttest: stop the Vault launcher: %v\nstderr:\n%s", err, l.stderr)
		}
	})

	line, err := l.waitReady(readyTimeout)
	if err != nil {
		t.Fatalf("vaulttest: %v\nstderr:\n%s", err, l.stderr)
	}
	var ready readyLine
	if err := json.Unmarshal(line, &ready); err != nil {
		t.Fatalf("vaulttest: launcher ready line is not JSON: %v", err)
	}
	if !strings.HasPrefix(ready.Addr, "http://127.0.0.1:") || ready.TokenFile != tokenFile {
		t.Fatalf("vaulttest: unexpected launcher ready line: addr %q, token_file %q", ready.Addr, ready.TokenFile)
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("vaulttest: read the launcher's root token: %v", err)
	}
	return &Vault{Addr: ready.Addr, Token: strings.TrimSpace(string(token))}
}

// spawn starts bin with args, a pipe on its stdin (kept open until stop, so the
// launcher also ends if this process dies), its first stdout line sent to l.ready and
// the tail of its stderr kept.
func spawn(bin string, args ...string) (*launcher, error) {
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	l := &launcher{
		cmd:    cmd,
		stdin:  stdin,
		stderr: &tailBuffer{max: maxStderr},
		done:   make(chan error, 1),
		ready:  make(chan []byte, 1),
	}
	cmd.Stdout = &firstLineWriter{line: l.ready}
	cmd.Stderr = l.stderr
	if err := cmd.Start(); err != nil {
		stdin.Close()
		return nil, err
	}
	// This goroutine ends when the process does; stop waits for it.
	go func() { l.done <- cmd.Wait() }()
	return l, nil
}

// waitReady returns the launcher's first stdout line, or an error if the process exits
// first or the timeout passes.
func (l *launcher) waitReady(timeout time.Duration) ([]byte, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line := <-l.ready:
		return line, nil
	case err := <-l.done:
		l.done <- err // for stop
		return nil, fmt.Errorf("the Vault launcher exited before it was ready: %v", err)
	case <-timer.C:
		return nil, fmt.Errorf("the Vault launcher was not ready after %s", timeout)
	}
}

// stop closes the launcher's stdin, sends SIGTERM, and waits for it to exit, killing it
// after stopTimeout. It returns the exit error, except one caused by its own kill. It
// may be called more than once.
func (l *launcher) stop() error {
	l.stopOnce.Do(func() {
		_ = l.stdin.Close()
		_ = l.cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(stopTimeout)
		defer timer.Stop()
		select {
		case l.waitErr = <-l.done:
		case <-timer.C:
			_ = l.cmd.Process.Kill()
			<-l.done
			l.waitErr = fmt.Errorf("did not exit within %s of SIGTERM; killed", stopTimeout)
		}
	})
	return l.waitErr
}

// firstLineWriter sends the first line written to it on line and discards the rest.
// Only exec's copying goroutine writes to it.
type firstLineWriter struct {
	line chan<- []byte
	buf  []byte
	sent bool
}

func (w *firstLineWriter) Write(p []byte) (int, error) {
	if w.sent {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	if i := bytes.IndexByte(w.buf, '\n'); i >= 0 {
		w.line <- w.buf[:i]
		w.sent = true
		w.buf = nil
	}
	return len(p), nil
}

// tailBuffer keeps the last max bytes written to it. It is safe for concurrent use;
// mu guards buf.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

// String returns what is kept.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
