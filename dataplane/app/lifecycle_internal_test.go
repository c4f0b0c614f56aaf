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

	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/signing"
)

// startWith starts a data plane on a fresh nats-server (no policy: it need not be
// ready), running extra components too; the test stops it.
func startWith(t *testing.T, extra ...component) *App {
	t.Helper()
	ns := natstest.StartWith(t, natstest.Options{NoConn: true})
	cfg := Config{
		AuditSpoolDir: filepath.Join(t.TempDir(), "audit-spool"),
		Region:        "eu", Listen: "127.0.0.1:0", NATSURL: ns.URL(), WorkerID: "lifecycle",
		JWTIssuer: "http://127.0.0.1:1/issuer", JWKSURL: "http://127.0.0.1:1/jwks.json",
		EgressAllowHosts: "127.0.0.1", PolicyPublicKeys: testPolicyPublicKey(t),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := start(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), extra)
	if err != nil {
		t.Fatalf("start data plane: %v", err)
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
// rest is closed once it finally returns.
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
	for _, other := range []string{"policy watch", "limiter", "http server", "audit relay", "key manager"} {
		if strings.Contains(err.Error(), other) {
			t.Errorf("Stop() = %v names %q, which stops when asked", err, other)
		}
	}
	if again := a.Stop(context.Background()); again == nil || again.Error() != err.Error() {
		t.Errorf("a second Stop = %v, want the first one's result", again)
	}

	close(release)
	awaitClosed(t, a.group.Finished(), 10*time.Second, "the stuck component to return")
	awaitClosed(t, a.closed, 30*time.Second, "the audit publisher, keys and NATS to be closed")
}

// TestAComponentFailureStopsTheApp: a component that fails ends the group, so the
// others (the HTTP server among them) stop and Done closes; Err and Stop report it.
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
	awaitClosed(t, a.group.Finished(), 30*time.Second, "the other components to stop")
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	if resp, err := client.Get("http://" + a.Addr() + "/healthz"); err == nil {
		_ = resp.Body.Close()
		t.Errorf("the HTTP server still answers (%d) after a component failed", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Stop(ctx); !errors.Is(err, boom) {
		t.Errorf("Stop() = %v, want the failure", err)
	}
}

// TestKillWaitsForTheComponents: Kill, the crash of tests, still leaves nothing
// running.
func TestKillWaitsForTheComponents(t *testing.T) {
	a := startWith(t)
	a.Kill()
	select {
	case <-a.group.Finished():
	default:
		t.Error("components still running after Kill")
	}
	select {
	case <-a.closed:
	default:
		t.Error("Kill returned before closing the audit publisher, keys and NATS")
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Errorf("Stop after Kill = %v, want nil", err)
	}
}

// testPolicyPublicKey is the public key file of a fresh policy signing key.
func testPolicyPublicKey(t *testing.T) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "policy-signing-key.pem")
	if _, _, err := signing.LoadOrCreate(key); err != nil {
		t.Fatal(err)
	}
	return signing.PublicPath(key)
}
