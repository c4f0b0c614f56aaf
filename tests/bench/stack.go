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
	"github.com/portcullis-gw/portcullis/shared/natsembed"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// Names in the benchmark's policy.
const (
	benchClient = "bench-client"
	benchModel  = "gpt-4o-mini"
	benchRegion = "eu"
)

// target is somewhere the load generator sends requests.
type target struct {
	Name   string
	URL    string // base URL, without /v1
	Auth   string // Authorization header value
	Client *http.Client
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
	direct, gateway target
	gw              *gatewayProcess

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

	iss, err := newIssuer()
	if err != nil {
		return nil, err
	}
	issuerURL, stopIssuer, err := serve(iss)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	s.onStop(stopIssuer)
	iss.url = issuerURL
	token, err := iss.Mint(benchClient, time.Hour)
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
		"PORTCULLIS_JWT_ISSUER":   issuerURL,
		"PORTCULLIS_JWT_AUDIENCE": identity.DefaultAudience,
		"PORTCULLIS_JWKS_URL":     issuerURL + jwksPath,
		"PORTCULLIS_WORKER_ID":    "bench-1",
	})
	if err != nil {
		return nil, err
	}
	s.onStop(gw.Stop)
	s.gw = gw

	s.direct = target{Name: "direct", URL: mockURL, Auth: "Bearer " + upstreamKey, Client: newClient()}
	s.gateway = target{Name: "gateway", URL: gw.URL, Auth: "Bearer " + token, Client: newClient()}
	s.onStop(s.direct.Client.CloseIdleConnections)
	s.onStop(s.gateway.Client.CloseIdleConnections)
	return s, nil
}

// benchPolicy is a one-client policy: a tier with limits far above what the benchmark
// sends, and one model on one deployment, the mock.
func benchPolicy(mockURL, keyFile string) *policy.Snapshot {
	return &policy.Snapshot{
		SchemaVersion: policy.SchemaVersion,
		Version:       1,
		GeneratedAt:   time.Now().UTC(),
		Tenants:       []policy.Tenant{{Name: "bench"}},
		Tiers: []policy.Tier{{
			Name:                  "bench",
			RequestsPerMinute:     1_000_000_000,
			TokensPerHour:         1_000_000_000_000,
			MaxConcurrentRequests: 100_000,
			AllowedModels:         []string{benchModel},
			AllowedOperations:     policy.Operations,
			DefaultMaxTokens:      1024,
		}},
		Clients:   []policy.Client{{ClientID: benchClient, Tenant: "bench", Tier: "bench", Enabled: true}},
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

// publishPolicy creates the PC_POLICY bucket, as the control plane does, and puts snap.
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
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:  natsnames.PolicyBucket,
		History: 5,
		Storage: jetstream.FileStorage,
	})
	if err != nil {
		return fmt.Errorf("create %s: %w", natsnames.PolicyBucket, err)
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
