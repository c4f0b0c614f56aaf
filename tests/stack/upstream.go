package stack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// UpstreamOptions describe one mock upstream of the stack: in this process (Mock),
// or the mockupstream command as a child process (Command), which adds its control
// API and key files (make run).
type UpstreamOptions struct {
	// Name names the upstream in Stack.Upstream and its log file.
	Name string
	// Listen is the host:port to serve on; "" is a random loopback port. With
	// Command it is required, and must be the address Command listens on.
	Listen string
	// Mock are the options of an in-process mock.
	Mock mockupstream.Options
	// Command, when set, runs the mockupstream command (argv) instead, with the
	// environment Env and its output in <LogDir>/<Name>.log.
	Command []string
	Env     []string
	// ReadyURLs are waited for, with any answer, before the upstream counts as
	// started; the mock's own /v1/models always is.
	ReadyURLs []string
}

// Upstream is a running mock upstream.
type Upstream struct {
	Name string
	// URL is its base URL, http://host:port.
	URL string
	// Mock is the in-process mock, nil for a child process.
	Mock *mockupstream.Server

	srv  *http.Server
	done chan struct{} // closed when srv.Serve has returned
	proc *process
}

// startUpstream starts o's mock upstream and waits until it answers.
func (s *Stack) startUpstream(ctx context.Context, o UpstreamOptions) (*Upstream, error) {
	if len(o.Command) > 0 {
		if o.Listen == "" {
			return nil, fmt.Errorf("upstream %s: a command needs its Listen address", o.Name)
		}
		p, err := startProcess(o.Name, filepath.Join(s.logDir, o.Name+".log"), o.Env, o.Command...)
		if err != nil {
			return nil, err
		}
		u := &Upstream{Name: o.Name, URL: "http://" + o.Listen, proc: p}
		s.track(u.Name, p.Exited(), p.Err)
		for _, url := range append([]string{u.URL + "/v1/models"}, o.ReadyURLs...) {
			if err := waitHTTP(ctx, url, 0, s.readyTimeout, p.Exited()); err != nil {
				stopCtx, cancel := s.failedStartStop(ctx)
				_ = p.stop(stopCtx)
				cancel()
				return nil, fmt.Errorf("upstream %s: %w\n--- %s (tail) ---\n%s", o.Name, err, p.logPath, p.Tail(30))
			}
		}
		return u, nil
	}
	listen := o.Listen
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", o.Name, err)
	}
	mock := mockupstream.New(o.Mock)
	u := &Upstream{
		Name: o.Name,
		URL:  "http://" + ln.Addr().String(),
		Mock: mock,
		srv:  &http.Server{Handler: mock, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(u.done)
		_ = u.srv.Serve(ln) // ErrServerClosed once stopped; a failed listener shows as refused requests
	}()
	return u, nil
}

// stop stops the upstream. An in-process mock closes at once, with every connection:
// nothing of a mock needs a graceful end, and Stack.Stop stops the upstreams along
// with the data planes so that the requests a mock holds (FailHang) end and the
// data planes' drains do not wait for them. A child process gets SIGTERM, and SIGKILL when ctx ends first.
func (u *Upstream) stop(ctx context.Context) error {
	if u.proc != nil {
		return u.proc.stop(ctx)
	}
	u.Mock.Close() // releases the requests FailHang holds
	err := u.srv.Close()
	select {
	case <-u.done:
	case <-ctx.Done():
	}
	if err != nil {
		return fmt.Errorf("upstream %s: %w", u.Name, err)
	}
	return nil
}
