package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/pgtest"
)

// startWith starts a control plane like startApp, running extra components too; the
// test stops it.
func startWith(t *testing.T, extra ...component) *App {
	t.Helper()
	cfg := Config{
		DatabaseURL:        pgtest.Database(t),
		Listen:             "127.0.0.1:0",
		EmbeddedNATSListen: "127.0.0.1:0",
		DataDir:            filepath.Join(t.TempDir(), "data"),
		LogLevel:           "info",
		PublishInterval:    DefaultPublishInterval,
		NATSReplicas:       DefaultNATSReplicas,
		WorkerTTL:          DefaultWorkerTTL,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := start(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), extra)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	return a
}

// awaitClosed fails t unless ch is closed within timeout.
func awaitClosed(t *testing.T, ch <-chan struct{}, timeout time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(timeout):
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// TestStopReturnsByItsDeadline: a component that ignores its context does not hold
// Stop past ctx's deadline; Stop says which component is still running, and the
// connections are closed once it finally returns.
func TestStopReturnsByItsDeadline(t *testing.T) {
	release := make(chan struct{})
	stuck := component{name: "stuck component", run: func(context.Context) error {
		<-release // ignores its context, as a hung component would
		return nil
	}}
	a := startWith(t, stuck)

	const deadline = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	stopped := make(chan error, 1)
	begin := time.Now()
	go func() { stopped <- a.Stop(ctx) }()
	var err error
	select {
	case err = <-stopped:
	case <-time.After(10 * time.Second):
		close(release) // let the test end, and goleak check, anyway
		t.Fatal("Stop did not return by its deadline while a component hung")
	}
	if took := time.Since(begin); took > deadline+2*time.Second {
		t.Errorf("Stop took %v with a %v deadline", took, deadline)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stuck component") {
		t.Errorf("Stop() = %v, want the deadline's error naming the stuck component", err)
	}
	for _, other := range []string{"policy publisher", "http server", "health collector", "key rotator"} {
		if strings.Contains(err.Error(), other) {
			t.Errorf("Stop() = %v names %q, which stops when asked", err, other)
		}
	}
	if again := a.Stop(context.Background()); again == nil || again.Error() != err.Error() {
		t.Errorf("a second Stop = %v, want the first one's result", again)
	}

	close(release)
	awaitClosed(t, a.group.Finished(), 10*time.Second, "the stuck component to return")
	awaitClosed(t, a.closed, 30*time.Second, "the connections to be closed")
}

// TestAComponentFailureStopsTheApp: a component that fails ends the group, so the
// others stop and Done closes; Err and Stop report the failure.
func TestAComponentFailureStopsTheApp(t *testing.T) {
	boom := errors.New("boom")
	failing := component{name: "failing component", run: func(ctx context.Context) error {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
			return boom
		}
	}}
	a := startWith(t, failing)
	awaitClosed(t, a.Done(), 10*time.Second, "Done after a component failed")
	if err := a.Err(); !errors.Is(err, boom) || !strings.Contains(err.Error(), "failing component") {
		t.Errorf("Err() = %v, want boom naming the component", err)
	}
	// The other components stop by themselves: the HTTP server among them.
	awaitClosed(t, a.group.Finished(), 30*time.Second, "the other components to stop")
	if resp, err := http.Get("http://" + a.Addr() + "/healthz"); err == nil {
		_ = resp.Body.Close()
		t.Errorf("the HTTP server still answers (%d) after a component failed", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(ctx); !errors.Is(err, boom) {
		t.Errorf("Stop() = %v, want the failure", err)
	}
}
