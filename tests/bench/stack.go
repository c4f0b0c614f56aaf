package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/identity"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsembed"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// Names in the benchmark's policy.
const (
	benchClient   = "bench-client"  // on a tier with every limit 0: limits off
	limitedClient = "bench-limited" // on a tier with limits far out of reach: limits on
	benchModel    = "gpt-4o-mini"
	benchRegion   = "eu"
)

// Limits of the limited client's tier: far more than any run can use, so every
// request is admitted and the limiter works in its common case, far from the limit.
const (
	farRequestsPerMinute = 1 << 40
	farTokensPerHour     = 1 << 50
	farConcurrency       = 1 << 20
)

// Target names, as the report shows them.
const (
	targetDirect   = "direct"
	targetGateway  = "gateway (limits off)"
	targetLimitsOn = "gateway (limits on)"
)

// target is somewhere the load generator sends requests.
type target struct {
	Name   string
	URL    string // base URL, without /v1
	Auth   string // Authorization header value
	Client *http.Client
	// Limited marks the limits-on target: any failed request, warm-up included,
	// fails the run, and the limiter's metrics are scraped around each cell.
	Limited bool
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// stack is everything the benchmark runs against. Stop tears it down in reverse order;
// it is idempotent.
type stack struct {
	direct, gateway, limited target
	gw                       *gatewayProcess
	metrics                  *http.Client // scrapes the data plane's /metrics

	stopOnce sync.Once
	stops    []func()
}

func (s *stack) onStop(f func()) { s.stops = append(s.stops, f) }

// Stop stops every part that was started, newest first.
func (s *stack) Stop() {
	s.stopOnce.Do(func() {
		for i := len(s.stops) - 1; i >= 0; i-- {
			s.stops[i]()
		}
	})
}

func startStack(ctx context.Context, root, tmp, dataplaneBin string, log io.Writer) (_ *stack, err error) {
	s := &stack{}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	ns, err := natsembed.Start(natsembed.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(tmp, "nats"), ServerName: "bench"})
	if err != nil {
		return nil, err
	}
	s.onStop(func() { ns.Shutdown(); ns.WaitForShutdown() })

	upstreamKey, err := randomHex(24)
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(tmp, "upstream.key")
	if err := os.WriteFile(keyFile, []byte(upstreamKey+"\n"), 0o600); err != nil {
		return nil, err
	}
	mockURL, stopMock, err := serve(mockupstream.New(mockupstream.Options{Name: "bench", RequireKey: upstreamKey}))
	if err != nil {
		return nil, fmt.Errorf("mock upstream: %w", err)
	}
	s.onStop(stopMock)

	iss, err := testissuer.Start()
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	s.onStop(iss.Close)
	token, err := iss.Mint(benchClient, time.Hour)
	if err != nil {
		return nil, err
	}
	limitedToken, err := iss.Mint(limitedClient, time.Hour)
	if err != nil {
		return nil, err
	}

	if err := publishPolicy(ctx, ns, benchPolicy(mockURL, keyFile)); err != nil {
		return nil, err
	}

	if dataplaneBin == "" {
		fmt.Fprintln(log, "bench: building ./dataplane/cmd/dataplane")
		if dataplaneBin, err = buildDataplane(ctx, root, tmp); err != nil {
			return nil, err
		}
	}
	gw, err := startGateway(ctx, dataplaneBin, tmp, map[string]string{
		"PORTCULLIS_REGION":       benchRegion,
		"PORTCULLIS_NATS_URL":     ns.ClientURL(),
		"PORTCULLIS_JWT_ISSUER":   iss.Name,
		"PORTCULLIS_JWT_AUDIENCE": identity.DefaultAudience,
		"PORTCULLIS_JWKS_URL":     iss.JWKSURL,
		"PORTCULLIS_WORKER_ID":    "bench-1",
		// Every request is audited through the spool to NATS, as in production; the
		// JSON lines go to a file rather than the gateway's stdout.
		"PORTCULLIS_AUDIT_SPOOL_DIR": filepath.Join(tmp, "audit-spool"),
		"PORTCULLIS_AUDIT_SINK":      filepath.Join(tmp, "audit.jsonl"),
	})
	if err != nil {
		return nil, err
	}
	s.onStop(gw.Stop)
	s.gw = gw

	s.direct = target{Name: targetDirect, URL: mockURL, Auth: "Bearer " + upstreamKey, Client: newClient()}
	s.gateway = target{Name: targetGateway, URL: gw.URL, Auth: "Bearer " + token, Client: newClient()}
	s.limited = target{Name: targetLimitsOn, URL: gw.URL, Auth: "Bearer " + limitedToken, Client: newClient(), Limited: true}
	s.metrics = &http.Client{}
	for _, c := range []*http.Client{s.direct.Client, s.gateway.Client, s.limited.Client, s.metrics} {
		s.onStop(c.CloseIdleConnections)
	}
	return s, nil
}

// targets are the stack's targets in the order each cell runs them.
func (s *stack) targets() []target { return []target{s.direct, s.gateway, s.limited} }

// scrapeLimits returns the data plane's limiter counters, admissions of the limited
// client only.
func (s *stack) scrapeLimits(ctx context.Context) (limitsCounters, error) {
	return scrapeLimits(ctx, s.metrics, s.gw.URL, limitedClient)
}

// benchPolicy is a two-client policy with one model on one deployment, the mock. The
// bench client's tier sets every limit to 0, which the data plane reads as unlimited
// (the admin API refuses 0, but this snapshot never goes through it): limits off. The
// limited client's tier sets limits far out of the benchmark's reach: limits on.
func benchPolicy(mockURL, keyFile string) *policy.Snapshot {
	tier := func(name string, rpm, tph, conc int64) policy.Tier {
		return policy.Tier{
			Name:                  name,
			RequestsPerMinute:     rpm,
			TokensPerHour:         tph,
			MaxConcurrentRequests: conc,
			AllowedModels:         []string{benchModel},
			AllowedOperations:     policy.Operations,
			DefaultMaxTokens:      1024,
		}
	}
	return &policy.Snapshot{
		SchemaVersion: policy.SchemaVersion,
		Version:       1,
		GeneratedAt:   time.Now().UTC(),
		Tenants:       []policy.Tenant{{Name: "bench"}},
		Tiers: []policy.Tier{
			tier("bench-unlimited", 0, 0, 0),
			tier("bench-far", farRequestsPerMinute, farTokensPerHour, farConcurrency),
		},
		Clients: []policy.Client{
			{ClientID: benchClient, Tenant: "bench", Tier: "bench-unlimited", Enabled: true},
			{ClientID: limitedClient, Tenant: "bench", Tier: "bench-far", Enabled: true},
		},
		Providers: []policy.Provider{{Name: "openai", Kind: policy.ProviderOpenAI}},
		Deployments: []policy.Deployment{{
			Name:           "mock-" + benchRegion,
			Provider:       "openai",
			Region:         benchRegion,
			Kind:           policy.KindCloud,
			BaseURL:        mockURL,
			KeySource:      policy.KeySourceFile,
			KeyPath:        keyFile,
			TLS:            policy.TLS{Verify: true},
			TimeoutSeconds: 30,
			Retry:          policy.Retry{MaxAttempts: 1, Backoff: "exponential"},
			CircuitBreaker: policy.CircuitBreaker{FailureThreshold: 5, ResetTimeoutSeconds: 60},
			Enabled:        true,
		}},
		Models:         []policy.Model{{ID: benchModel + "-" + benchRegion, Name: benchModel, Deployment: "mock-" + benchRegion, UpstreamModel: benchModel}},
		ResidencyRules: []policy.ResidencyRule{{Residency: benchRegion, AllowedRegions: []string{benchRegion}}},
	}
}

// publishPolicy creates the PC_POLICY, PC_LIMITS and PC_WORKERS buckets, as the
// control plane does, and puts snap into PC_POLICY.
func publishPolicy(ctx context.Context, ns *server.Server, snap *policy.Snapshot) error {
	if err := snap.Validate(); err != nil {
		return fmt.Errorf("bench policy: %w", err)
	}
	data, err := policy.Encode(snap)
	if err != nil {
		return err
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := natsbuckets.Ensure(ctx, js, natsbuckets.Options{}); err != nil {
		return fmt.Errorf("create buckets: %w", err)
	}
	kv, err := js.KeyValue(ctx, natsnames.PolicyBucket)
	if err != nil {
		return fmt.Errorf("open %s: %w", natsnames.PolicyBucket, err)
	}
	if _, err := kv.Put(ctx, natsnames.PolicySnapshotKey, data); err != nil {
		return fmt.Errorf("put policy: %w", err)
	}
	return nil
}

// serve runs h on a loopback port until the returned stop is called.
func serve(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "bench: serve:", err)
		}
	}()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
