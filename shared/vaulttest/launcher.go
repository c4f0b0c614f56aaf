package vaulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultReadyTimeout bounds the wait for the launcher's ready line unless
// LaunchOptions.ReadyTimeout says otherwise.
const DefaultReadyTimeout = 60 * time.Second

// stopTimeout bounds the test helpers' wait for the launcher to exit after SIGTERM
// before it is killed.
const stopTimeout = 15 * time.Second

// killWait bounds the wait for the launcher to go once SIGKILL was sent.
const killWait = 2 * time.Second

// maxStderr is how much of the launcher's stderr is kept for failure messages, and
// stderrLines how many of its last lines an error of Launch quotes.
const (
	maxStderr   = 64 << 10
	stderrLines = 30
)

// readyLine is the JSON line the launcher prints on stdout once it serves.
type readyLine struct {
	Addr      string `json:"addr"`
	TokenFile string `json:"token_file"`
	RootToken string `json:"root_token"`
}

// LaunchOptions say how Launch runs the launcher.
type LaunchOptions struct {
	// Listen is the launcher's host:port, on loopback; "" is a random port of
	// 127.0.0.1.
	Listen string
	// TokenFile, when set, is where the launcher writes its root token (mode 0600);
	// otherwise the root token is only in Launcher.RootToken.
	TokenFile string
	// Env is the launcher's environment; nil is this process's.
	Env []string
	// LogFile, when set, receives the launcher's standard error (Vault's logs); it is
	// created, or emptied.
	LogFile string
	// SysProcAttr, when set, are the launcher process's attributes: the dev stack
	// gives it a process group of its own and a signal on its parent's death.
	SysProcAttr *syscall.SysProcAttr
	// ReadyTimeout bounds the wait for the ready line; 0 is DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Launcher is a running launcher of tests/vaultdev: a fresh Vault in memory. It holds
// a pipe to the launcher's standard input, which Stop closes, so that the launcher
// also ends when this process dies. Its methods are safe for concurrent use.
type Launcher struct {
	// Addr is the Vault's base address, http://127.0.0.1:PORT.
	Addr string
	// TokenFile is the file that holds the root token, when LaunchOptions named one.
	TokenFile string
	// RootToken is the root token when there is no TokenFile: a throwaway dev token
	// of this Vault only; never log it.
	RootToken string

	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stderr  *tailBuffer
	exited  chan struct{} // closed once the process has been reaped
	waitErr error         // set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Launch runs the launcher bin as o says and waits until it serves, for at most the
// ready timeout and until ctx ends; ctx does not bound the launcher's life, Stop does.
// When it does not serve, Launch stops it and returns why, with the end of its stderr.
func Launch(ctx context.Context, bin string, o LaunchOptions) (*Launcher, error) {
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := []string{"-listen", listen}
	if o.TokenFile != "" {
		args = append(args, "-token-file", o.TokenFile)
	}
	l := &Launcher{cmd: exec.Command(bin, args...), stderr: &tailBuffer{max: maxStderr}, exited: make(chan struct{})}
	l.cmd.Env = o.Env
	l.cmd.SysProcAttr = o.SysProcAttr
	ready := make(chan []byte, 1)
	l.cmd.Stdout = &firstLineWriter{line: ready}
	l.cmd.Stderr = l.stderr
	var logFile *os.File
	if o.LogFile != "" {
		f, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("the Vault launcher's log: %w", err)
		}
		logFile = f
		l.cmd.Stderr = io.MultiWriter(l.stderr, f)
	}
	closeLog := func() {
		if logFile != nil {
			logFile.Close()
		}
	}
	stdin, err := l.cmd.StdinPipe()
	if err != nil {
		closeLog()
		return nil, fmt.Errorf("the Vault launcher's stdin: %w", err)
	}
	l.stdin = stdin
	if err := l.cmd.Start(); err != nil {
		stdin.Close()
		closeLog()
		return nil, fmt.Errorf("start the Vault launcher %s: %w", bin, err)
	}
	// This goroutine ends when the process does; Stop waits for it.
	go func() {
		l.waitErr = l.cmd.Wait()
		closeLog()
		close(l.exited)
	}()

	if err := l.waitReady(ctx, ready, o); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		_ = l.Stop(stopCtx)
		where := "stderr"
		if o.LogFile != "" {
			where = o.LogFile
		}
		return nil, fmt.Errorf("%w\n--- %s (tail) ---\n%s", err, where, l.StderrTail(stderrLines))
	}
	return l, nil
}

// waitReady waits for the ready line on ready and checks it against o.
func (l *Launcher) waitReady(ctx context.Context, ready <-chan []byte, o LaunchOptions) error {
	timeout := o.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var line []byte
	select {
	case line = <-ready:
	case <-l.exited:
		return fmt.Errorf("the Vault launcher exited before it was ready: %v", l.waitErr)
	case <-timer.C:
		return fmt.Errorf("the Vault launcher was not ready after %s", timeout)
	case <-ctx.Done():
		return fmt.Errorf("waiting for the Vault launcher: %w", context.Cause(ctx))
	}
	var r readyLine
	if err := json.Unmarshal(line, &r); err != nil {
		return fmt.Errorf("the Vault launcher's ready line is not JSON: %v", err)
	}
	u, err := url.Parse(r.Addr)
	if err != nil || u.Scheme != "http" || !isLoopback(u.Hostname()) {
		return fmt.Errorf("the Vault launcher's ready line has the address %q, want http:// on loopback", r.Addr)
	}
	if o.TokenFile != "" {
		want, err := filepath.Abs(o.TokenFile)
		if err != nil || r.TokenFile != want {
			return fmt.Errorf("the Vault launcher wrote its root token to %q, want %q", r.TokenFile, o.TokenFile)
		}
	}
	l.Addr, l.TokenFile, l.RootToken = strings.TrimRight(r.Addr, "/"), r.TokenFile, r.RootToken
	return nil
}

// isLoopback reports whether host is a loopback IP address or localhost.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Exited is closed once the launcher has ended and been reaped.
func (l *Launcher) Exited() <-chan struct{} { return l.exited }

// Err is how the launcher ended; it waits until it has.
func (l *Launcher) Err() error {
	<-l.exited
	return l.waitErr
}

// StderrTail returns the last n lines the launcher wrote to its stderr (of at most
// the last 64 KiB).
func (l *Launcher) StderrTail(n int) string {
	lines := strings.Split(strings.TrimRight(l.stderr.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Stop closes the launcher's stdin and sends it SIGTERM (to its process group when it
// leads one), and waits for it to exit until ctx ends; then it sends SIGKILL and waits
// at most 2 s more. It returns how the launcher exited, or an error saying it had to be
// killed. It may be called more than once and from several goroutines; later calls
// return the first one's result.
func (l *Launcher) Stop(ctx context.Context) error {
	l.stopOnce.Do(func() {
		_ = l.stdin.Close()
		l.signal(syscall.SIGTERM)
		select {
		case <-l.exited:
			l.stopErr = l.waitErr
			return
		case <-ctx.Done():
		}
		l.signal(syscall.SIGKILL)
		select {
		case <-l.exited:
			l.stopErr = errors.New("the Vault launcher did not stop in time after SIGTERM; killed")
		case <-time.After(killWait):
			l.stopErr = fmt.Errorf("the Vault launcher (pid %d) still runs after SIGKILL", l.cmd.Process.Pid)
		}
	})
	return l.stopErr
}

// signal sends sig to the process group the launcher leads, or to the launcher alone
// when it leads none.
func (l *Launcher) signal(sig syscall.Signal) {
	if syscall.Kill(-l.cmd.Process.Pid, sig) != nil {
		_ = l.cmd.Process.Signal(sig)
	}
}

// startLauncher runs bin with its root token written to a file in a temporary
// directory, waits for its ready line, and registers its stop with t.Cleanup.
func startLauncher(t testing.TB, bin string) *Vault {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "root-token")
	l, err := Launch(context.Background(), bin, LaunchOptions{TokenFile: tokenFile})
	if err != nil {
		t.Fatalf("vaulttest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if err := l.Stop(ctx); err != nil {
			t.Errorf("vaulttest: stop the Vault launcher: %v\nstderr:\n%s", err, l.StderrTail(stderrLines))
		}
	})
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("vaulttest: read the launcher's root token: %v", err)
	}
	return &Vault{Addr: l.Addr, Token: strings.TrimSpace(string(token))}
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
