package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildDataplane builds ./dataplane/cmd/dataplane into dir and returns the binary's path.
func buildDataplane(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "dataplane")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./dataplane/cmd/dataplane")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./dataplane/cmd/dataplane: %w\n%s", err, out)
	}
	return bin, nil
}

// gatewayProcess is a data plane running as a child process. Stop is idempotent.
type gatewayProcess struct {
	URL     string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once the process has been reaped
	waitErr error         // set before exited is closed

	stopOnce sync.Once
}

// startGateway runs bin with env (plus PORTCULLIS_LISTEN on a free loopback port) and
// waits until its /readyz answers 200. PORTCULLIS_* variables of the benchmark's own
// environment are not passed on.
func startGateway(ctx context.Context, bin, dir string, env map[string]string) (*gatewayProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	env["PORTCULLIS_LISTEN"] = listen

	g := &gatewayProcess{
		URL:     "http://" + listen,
		logPath: filepath.Join(dir, "dataplane.log"),
		exited:  make(chan struct{}),
	}
	logFile, err := os.Create(g.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child keeps its own descriptor

	g.cmd = exec.Command(bin)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PORTCULLIS_") {
			g.cmd.Env = append(g.cmd.Env, kv)
		}
	}
	for k, v := range env {
		g.cmd.Env = append(g.cmd.Env, k+"="+v)
	}
	g.cmd.Stdout, g.cmd.Stderr = logFile, logFile
	// Its own process group, and killed if the benchmark dies first: no orphans.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start data plane: %w", err)
	}
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()

	if err := g.waitReady(ctx, 60*time.Second); err != nil {
		g.Stop()
		return nil, fmt.Errorf("%w\n--- data plane log (tail) ---\n%s", err, tail(g.logPath, 30))
	}
	return g, nil
}

func (g *gatewayProcess) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	for {
		select {
		case <-g.exited:
			return fmt.Errorf("data plane exited before it was ready: %v", g.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := client.Get(g.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("data plane not ready on %s/readyz after %s", g.URL, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM, waits up to 10 s, then kills the process group.
func (g *gatewayProcess) Stop() {
	g.stopOnce.Do(func() {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
			<-g.exited
		}
	})
}

// PeakRSS returns the process's peak resident set size (VmHWM) in KiB. It must be called
// while the process runs.
func (g *gatewayProcess) PeakRSS() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", g.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmHWM in /proc status")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
