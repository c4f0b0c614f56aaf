package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"
)

// pollInterval is how often the readiness waits look again.
const pollInterval = 50 * time.Millisecond

// waitHTTP waits until url answers GET with the status want (any status, when want
// is 0), for at most timeout. It gives up early when ctx ends or when exited (which
// may be nil) is closed: the process that should answer has ended.
func waitHTTP(ctx context.Context, url string, want int, timeout time.Duration, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if want == 0 || resp.StatusCode == want {
				return nil
			}
			last = fmt.Sprintf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			what := "an answer"
			if want != 0 {
				what = fmt.Sprintf("status %d", want)
			}
			return fmt.Errorf("%s: no %s within %s (last: %s)", url, what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", url, ctx.Err())
		case <-exited:
			return fmt.Errorf("%s: the process that serves it exited", url)
		case <-time.After(pollInterval):
		}
	}
}

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Listening reports whether something accepts TCP connections on addr (host:port).
func Listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
