package rungroup

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"os"
	"runtime"
)

// TestMain fails the package if its tests leave goroutines behind (the shared module
// does not depend on goleak, so it counts them).
func TestMain(m *testing.M) {
	before := runtime.NumGoroutine()
	code := m.Run()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); code == 0 && n > before {
		buf := make([]byte, 1<<20)
		os.Stderr.Write(buf[:runtime.Stack(buf, true)])
		os.Stderr.WriteString("rungroup: goroutines left behind by the tests\n")
		code = 1
	}
	os.Exit(code)
}

// untilDone is a well-behaved component: it returns nil once ctx ends.
func untilDone(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func TestStopEndsEveryComponent(t *testing.T) {
	g := New(context.Background(), nil)
	for _, name := range []string{"a", "b", "c"} {
		g.Go(name, untilDone)
	}
	g.Go("quick", func(context.Context) error { return nil }) // done at once: not a failure
	if got := g.Running(); len(got) < 3 {
		t.Fatalf("Running() = %v, want at least a, b and c", got)
	}
	g.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if got := g.Running(); len(got) != 0 {
		t.Errorf("still running after Wait: %v", got)
	}
	select {
	case <-g.Finished():
	default:
		t.Error("Finished not closed after a complete Wait")
	}
}

func TestAFailureStopsTheOthers(t *testing.T) {
	g := New(context.Background(), nil)
	g.Go("steady", untilDone)
	boom := errors.New("boom")
	g.Go("broken", func(context.Context) error { return boom })
	select {
	case <-g.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a failed component did not end the group's context")
	}
	if err := g.Err(); !errors.Is(err, boom) || !strings.Contains(err.Error(), "broken") {
		t.Errorf("Err() = %v, want boom naming the component", err)
	}
	if cause := context.Cause(g.Context()); !errors.Is(cause, boom) {
		t.Errorf("context cause = %v, want boom", cause)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Wait(ctx); !errors.Is(err, boom) {
		t.Errorf("Wait() = %v, want boom", err)
	}
}

func TestCancellationIsNotAFailure(t *testing.T) {
	g := New(context.Background(), nil)
	g.Go("cancelled", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	g.Stop()
	if err := g.Wait(context.Background()); err != nil {
		t.Errorf("Wait() = %v, want nil: a component returning its context's error after a stop did not fail", err)
	}
}

func TestWaitIsBoundedByItsContext(t *testing.T) {
	g := New(context.Background(), nil)
	release := make(chan struct{})
	g.Go("stuck", func(context.Context) error { <-release; return nil }) // ignores its context
	g.Go("fine", untilDone)
	g.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := g.Wait(ctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Wait took %v with a 100ms deadline", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stuck") || strings.Contains(err.Error(), "fine") {
		t.Errorf("Wait() = %v, want a deadline error naming only the stuck component", err)
	}
	close(release)
	select {
	case <-g.Finished():
	case <-time.After(5 * time.Second):
		t.Fatal("Finished not closed once the stuck component returned")
	}
	if err := g.Wait(context.Background()); err != nil {
		t.Errorf("second Wait() = %v, want nil", err)
	}
}

func TestGoAfterWaitStartsNothing(t *testing.T) {
	g := New(context.Background(), nil)
	g.Stop()
	if err := g.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{}, 1)
	g.Go("late", func(context.Context) error { ran <- struct{}{}; return nil })
	select {
	case <-ran:
		t.Error("a component started after Wait ran")
	case <-time.After(50 * time.Millisecond):
	}
}

func TestHTTPServer(t *testing.T) {
	newServer := func(t *testing.T, h http.Handler) (HTTPServer, string) {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return HTTPServer{Server: &http.Server{Handler: h, ReadHeaderTimeout: time.Second}, Listener: ln,
			ShutdownGrace: time.Second}, "http://" + ln.Addr().String()
	}
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

	t.Run("a graceful shutdown first ends Run with nil", func(t *testing.T) {
		h, url := newServer(t, ok)
		g := New(context.Background(), nil)
		g.Go("http", h.Run)
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		http.DefaultClient.CloseIdleConnections()
		if err := h.Server.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		g.Stop()
		if err := g.Wait(context.Background()); err != nil {
			t.Errorf("Wait() = %v", err)
		}
	})

	t.Run("the group's end shuts it down", func(t *testing.T) {
		h, _ := newServer(t, ok)
		g := New(context.Background(), nil)
		g.Go("http", h.Run)
		g.Stop()
		if err := g.Wait(context.Background()); err != nil {
			t.Errorf("Wait() = %v", err)
		}
		if err := h.Server.Serve(h.Listener); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve after Run = %v, want ErrServerClosed", err)
		}
	})

	t.Run("a request outliving the grace is cut", func(t *testing.T) {
		entered, release := make(chan struct{}), make(chan struct{})
		h, url := newServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			close(entered)
			<-release
		}))
		defer close(release)
		h.ShutdownGrace = 50 * time.Millisecond
		g := New(context.Background(), nil)
		g.Go("http", h.Run)
		go func() {
			if resp, err := http.Get(url); err == nil {
				_ = resp.Body.Close()
			}
		}()
		<-entered
		g.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "http shutdown") {
			t.Errorf("Wait() = %v, want the shutdown's deadline error", err)
		}
	})

	t.Run("a failure to serve is a failure", func(t *testing.T) {
		h, _ := newServer(t, ok)
		_ = h.Listener.Close()
		g := New(context.Background(), nil)
		g.Go("http", h.Run)
		<-g.Done()
		if err := g.Wait(context.Background()); err == nil || !strings.Contains(err.Error(), "http server") {
			t.Errorf("Wait() = %v, want a serve error", err)
		}
	})
}

// TestShare: a step of a stop gets its share of the time left, and no more than ctx.
func TestShare(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	half, cancelHalf := Share(ctx, 2)
	defer cancelHalf()
	end, _ := ctx.Deadline()
	got, ok := half.Deadline()
	if left := time.Until(got); !ok || left > 5*time.Second || left < 4*time.Second || !got.Before(end) {
		t.Fatalf("half of 10 s ends in %v (deadline %v)", left, ok)
	}
	whole, cancelWhole := Share(context.Background(), 2)
	defer cancelWhole()
	if _, ok := whole.Deadline(); ok {
		t.Fatal("a context without a deadline got one")
	}
	cancel()
	if half.Err() == nil {
		t.Fatal("the share outlived its parent")
	}
}

// TestDrain: a request that outlasts the drain is cut at half the deadline, which a
// bounded stop expects; only a stop already out of time is an error.
func TestDrain(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		wantErr bool
	}{{"cut after half the deadline", 400 * time.Millisecond, false}, {"out of time", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			hold, held := make(chan struct{}), make(chan struct{})
			defer close(hold)
			srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				close(held)
				<-hold
			}), ReadHeaderTimeout: time.Second}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			go func() {
				if resp, err := http.Get("http://" + ln.Addr().String()); err == nil {
					resp.Body.Close()
				}
			}()
			<-held
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			begin := time.Now()
			err = Drain(ctx, srv, nil)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Drain: %v, want error %v", err, tc.wantErr)
			}
			if took := time.Since(begin); took > tc.timeout/2+time.Second {
				t.Fatalf("Drain took %v of a %v deadline", took, tc.timeout)
			}
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				t.Fatalf("Serve: %v", err)
			}
		})
	}
}

// TestCloseWithin: the close is waited for while the deadline allows, and left to
// finish in the background after it.
func TestCloseWithin(t *testing.T) {
	closed := make(chan struct{})
	if err := CloseWithin(context.Background(), closed, func() {}); err != nil {
		t.Fatalf("a quick close: %v", err)
	}
	<-closed

	release := make(chan struct{})
	closed = make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := CloseWithin(ctx, closed, func() { <-release }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a close past the deadline: %v, want the deadline's error", err)
	}
	close(release)
	<-closed // it still finishes
}
