package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Load of TestBinaryMemoryStaysBounded.
const (
	loadRequests    = 200_000
	loadConnections = 8
	maxRSSBytes     = 100 << 20
)

// TestBinaryMemoryStaysBounded builds the command, runs it on loopback as make run and
// make bench do, and sends it loadRequests chat completions over loadConnections
// keep-alive connections: its resident memory (VmRSS) and the peak of it (VmHWM) must
// stay under maxRSSBytes, though every request is recorded (the last few only) and
// logged.
func TestBinaryMemoryStaysBounded(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Fatalf("this test reads the memory from /proc (Linux): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "mockupstream")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	addr, pid := startBinary(t, bin)

	start := time.Now()
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello, how are you today?"}]}`
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, loadConnections)
	for c := range loadConnections {
		wg.Go(func() {
			if err := load(addr, c, body, &next); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	elapsed := time.Since(start)

	rss, peak := memoryOf(t, pid)
	t.Logf("%d requests over %d connections in %v: VmRSS %.1f MiB, VmHWM %.1f MiB",
		loadRequests, loadConnections, elapsed.Round(time.Millisecond), float64(rss)/(1<<20), float64(peak)/(1<<20))
	if rss >= maxRSSBytes || peak >= maxRSSBytes {
		t.Fatalf("VmRSS %d bytes, VmHWM %d bytes after %d requests: want both under %d", rss, peak, loadRequests, maxRSSBytes)
	}
}

// startBinary runs bin on a free loopback port without its control API, and returns
// its address and pid once it listens. Its log goes nowhere; cleanup stops it.
func startBinary(t *testing.T, bin string) (string, int) {
	t.Helper()
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--control-listen", "")
	cmd.Env = append(os.Environ(), "PORTCULLIS_MOCK_CONTROL_LISTEN=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	listening := make(chan string, 1)
	go func() {
		// The first line says where it listens; the access log after it is drained.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "mock upstream listening" {
				listening <- line.Addr
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
		close(exited)
	}()
	select {
	case addr := <-listening:
		return addr, cmd.Process.Pid
	case <-exited:
		t.Fatal("mockupstream exited before it listened")
	case <-time.After(30 * time.Second):
		t.Fatal("mockupstream did not listen within 30s")
	}
	return "", 0
}

// load sends chat completions on one keep-alive connection to addr, as a gateway's
// deployment would (a /d/<name>/ path, a key, a request id), until loadRequests have
// been taken in all. It reads each answer whole and checks its status.
func load(addr string, conn int, body string, next *atomic.Int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(deadline)
	}
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	for n := next.Add(1); n <= loadRequests; n = next.Add(1) {
		fmt.Fprintf(w, "POST /d/openai-eu/v1/chat/completions HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer sk-load-%d\r\n"+
			"Content-Type: application/json\r\nX-Request-Id: load-%d-%d\r\nContent-Length: %d\r\n\r\n%s",
			addr, conn, conn, n, len(body), body)
		if err := w.Flush(); err != nil {
			return err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return fmt.Errorf("request %d: %w", n, err)
		}
		answer, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || !bytes.Contains(answer, []byte("mock reply")) {
			return fmt.Errorf("request %d: status %d, %v: %.200s", n, resp.StatusCode, err, answer)
		}
	}
	return nil
}

// memoryOf returns the VmRSS and VmHWM of process pid, in bytes.
func memoryOf(t *testing.T, pid int) (rss, peak int64) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("%s in /proc/%d/status: %q", key, pid, value)
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if rss == 0 || peak == 0 {
		t.Fatalf("no VmRSS or VmHWM in /proc/%d/status", pid)
	}
	return rss, peak
}
