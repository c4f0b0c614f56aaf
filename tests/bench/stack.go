package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	dpapp "github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/identity"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsembed"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/shared/testissuer"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
	teststack "github.com/portcullis-gw/portcullis/tests/stack"
)

// Names in the benchmark's policy.
const (
	benchClient   = "bench-client"  // on a tier with every limit 0: limits off
	limitedClient = "bench-limited" // on a tier with limits far out of reach: limits on
	guardedClient = "bench-guarded" // limits off, every guardrail family on
	benchModel    = "gpt-4o-mini"
	pacedModel    = "gpt-4o-mini-paced" // on the paced mock, for time to first token
	benchRegion   = "eu"
)

// pacedChunkDelay is the paced mock's pause between streamed chunks: a model
// writing about 200 tokens a second.
const pacedChunkDelay = 5 * time.Millisecond

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
	targetNginx    = "nginx (bare proxy)"
	targetGateway  = "gateway (limits off)"
	targetLimitsOn = "gateway (limits on)"
	targetGuarded  = "gateway (guardrails on)"
	targetTraced   = "gateway (limits on, tracing on)"
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

// stack is everything the benchmark runs against: package stack's stack, the one make
// run and the end-to-end tests use, without a control plane (a nats-server holding the
// benchmark's policy, a JWKS issuer, the mock upstream and the data plane binary as a
// child process, whose memory is measured). Stop tears it down; it is idempotent.
type stack struct {
	direct, gateway, limited, guarded target
	// traced is the limited client on a second data plane that traces every
	// request and exports the spans over OTLP to the sink's collector.
	traced target
	otlp   *otlpSink
	// nginx is the bare-proxy reference; nil when nginx is not installed, which
	// nginxNote then says.
	nginx     *target
	nginxNote string
	// nginxPacedURL is nginx's proxy of the paced mock, for time to first token.
	nginxPacedURL string
	// pacedURL is the paced mock's base URL; upstreamAuth authorises a request to it.
	pacedURL, upstreamAuth string
	gw                     *teststack.DataPlane
	metrics                *http.Client // scrapes the data plane's /metrics, on its metrics listener

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

// stopTimeout bounds the stop of the benchmark's stack.
const stopTimeout = 15 * time.Second

func startStack(ctx context.Context, root, tmp, dataplaneBin string, pprof bool, log io.Writer) (_ *stack, err error) {
	s := &stack{}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	upstreamKey, keyDir, keyFile, err := writeUpstreamKey(tmp)
	if err != nil {
		return nil, err
	}

	if s.otlp, err = startOTLPSink(); err != nil {
		return nil, err
	}
	s.onStop(s.otlp.Close)

	iss, err := testissuer.Start()
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	s.onStop(iss.Close)
	// The benchmark signs its policy as the control plane would.
	policyKey, _, err := signing.LoadOrCreate(filepath.Join(tmp, "policy-signing-key.pem"))
	if err != nil {
		return nil, err
	}
	token, err := iss.Mint(benchClient, time.Hour)
	if err != nil {
		return nil, err
	}
	limitedToken, err := iss.Mint(limitedClient, time.Hour)
	if err != nil {
		return nil, err
	}
	guardedToken, err := iss.Mint(guardedClient, time.Hour)
	if err != nil {
		return nil, err
	}

	if dataplaneBin == "" {
		fmt.Fprintln(log, "bench: building ./dataplane/cmd/dataplane")
		if dataplaneBin, err = buildDataplane(ctx, root, tmp); err != nil {
			return nil, err
		}
	}
	env := append(childEnv(),
		// The report counts the limited client's admissions alone: the limiter's
		// series by client (off by default). The stack gives the data plane a
		// metrics listener of its own (PORTCULLIS_METRICS_LISTEN).
		"PORTCULLIS_METRICS_CLIENT_LABELS=true",
		// key_source file, under its own directory. The egress allowlist (the mock's
		// host:port) comes from the stack.
		"PORTCULLIS_KEY_DIR="+keyDir,
	)
	if pprof {
		env = append(env, "PORTCULLIS_PPROF=true") // on the metrics listener, for the profile phase
	}
	st, err := teststack.Start(ctx, teststack.Options{
		LogDir:           tmp,
		WaitReady:        true,
		NATS:             natsembed.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(tmp, "nats"), ServerName: "bench"},
		Issuer:           teststack.Issuer{Name: iss.Name, JWKSURL: iss.JWKSURL},
		PolicyPublicKeys: signing.PublicPath(filepath.Join(tmp, "policy-signing-key.pem")),
		Upstreams: []teststack.UpstreamOptions{
			{Name: "mock", Mock: mockupstream.Options{Name: "bench", RequireKey: upstreamKey}},
			{Name: "paced", Mock: mockupstream.Options{Name: "bench-paced", RequireKey: upstreamKey, ChunkDelay: pacedChunkDelay}},
		},
		BeforeDataPlanes: func(ctx context.Context, st *teststack.Stack) error {
			creds, err := st.NATSCreds(natsauth.ControlPlane())
			if err != nil {
				return err
			}
			return publishPolicy(ctx, st.NATSURL, creds, benchPolicy(st.Upstream("mock").URL, st.Upstream("paced").URL, keyFile), policyKey)
		},
		DataPlanes: []teststack.DataPlaneOptions{{
			Name:   "dataplane",
			Binary: dataplaneBin,
			Env:    append(slices.Clone(env), dataplaneFiles(tmp, "dataplane")...),
			Config: dpapp.Config{Region: benchRegion, WorkerID: "bench-1", JWTAudience: identity.DefaultAudience},
		}, {
			// The same with tracing on at 100% sampling, exporting to s.otlp.
			Name:   "traced",
			Binary: dataplaneBin,
			Env: append(slices.Clone(env), append(dataplaneFiles(tmp, "traced"),
				"OTEL_EXPORTER_OTLP_ENDPOINT="+s.otlp.URL(), "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
				"OTEL_TRACES_SAMPLER=always_on")...),
			Config: dpapp.Config{Region: benchRegion, WorkerID: "bench-traced", JWTAudience: identity.DefaultAudience},
		}},
	})
	if err != nil {
		return nil, err
	}
	s.onStop(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
		defer cancel()
		if err := st.Stop(ctx); err != nil {
			fmt.Fprintln(log, "bench: stop:", err)
		}
	})
	s.gw = st.DataPlane("dataplane")
	mockURL := st.Upstream("mock").URL

	s.direct = target{Name: targetDirect, URL: mockURL, Auth: "Bearer " + upstreamKey, Client: newClient()}
	s.gateway = target{Name: targetGateway, URL: s.gw.URL, Auth: "Bearer " + token, Client: newClient()}
	s.limited = target{Name: targetLimitsOn, URL: s.gw.URL, Auth: "Bearer " + limitedToken, Client: newClient(), Limited: true}
	s.guarded = target{Name: targetGuarded, URL: s.gw.URL, Auth: "Bearer " + guardedToken, Client: newClient()}
	s.traced = target{Name: targetTraced, URL: st.DataPlane("traced").URL, Auth: "Bearer " + limitedToken, Client: newClient()}
	s.pacedURL, s.upstreamAuth = st.Upstream("paced").URL, "Bearer "+upstreamKey
	s.metrics = &http.Client{}
	for _, c := range []*http.Client{s.direct.Client, s.gateway.Client, s.limited.Client, s.guarded.Client, s.traced.Client, s.metrics} {
		s.onStop(c.CloseIdleConnections)
	}
	if bin := findNginx(); bin == "" {
		s.nginxNote = "nginx is not installed, so there is no bare-proxy reference row (" + nginxInstall + ")"
		fmt.Fprintln(log, "bench: note:", s.nginxNote)
	} else {
		urls, stop, err := startNginx(ctx, bin, filepath.Join(tmp, "nginx"), []string{mockURL, s.pacedURL}, log)
		if err != nil {
			return nil, err
		}
		s.onStop(stop)
		s.nginx = &target{Name: targetNginx, URL: urls[0], Auth: "Bearer " + upstreamKey, Client: newClient()}
		s.nginxPacedURL = urls[1]
		s.onStop(s.nginx.Client.CloseIdleConnections)
	}
	return s, nil
}

// targets are the stack's targets in the order each cell runs them.
func (s *stack) targets() []target {
	if s.nginx == nil {
		return []target{s.direct, s.gateway, s.limited, s.traced, s.guarded}
	}
	return []target{s.direct, *s.nginx, s.gateway, s.limited, s.traced, s.guarded}
}

// scrapeLimits returns the data plane's limiter counters, admissions of the limited
// client only.
func (s *stack) scrapeLimits(ctx context.Context) (limitsCounters, error) {
	return scrapeLimits(ctx, s.metrics, s.gw.MetricsURL, limitedClient)
}

// benchGuardrails is the guarded client's policy: every family on in both
// directions, with the strongest action each takes.
var benchGuardrails = policy.Guardrails{
	PII:       policy.GuardrailFamily{Input: policy.GuardrailRedact, Output: policy.GuardrailRedact},
	Secrets:   policy.GuardrailFamily{Input: policy.GuardrailBlock, Output: policy.GuardrailBlock},
	Injection: policy.GuardrailFamily{Input: policy.GuardrailBlock, Output: policy.GuardrailBlock},
}

// benchPolicy is a three-client policy with one model on each of two deployments,
// the mock and the paced mock. The bench client's tier sets every limit to 0, which
// the data plane reads as unlimited (the admin API refuses 0, but this snapshot
// never goes through it): limits off. The limited client's tier sets limits far out
// of the benchmark's reach: limits on. The guarded client's tier is the bench
// client's with every guardrail on.
func benchPolicy(mockURL, pacedURL, keyFile string) *policy.Snapshot {
	tier := func(name string, rpm, tph, conc int64) policy.Tier {
		return policy.Tier{
			Name:                  name,
			RequestsPerMinute:     rpm,
			TokensPerHour:         tph,
			MaxConcurrentRequests: conc,
			AllowedModels:         []string{benchModel, pacedModel},
			AllowedOperations:     policy.Operations,
			DefaultMaxTokens:      1024,
		}
	}
	guarded := tier("bench-guarded", 0, 0, 0)
	guarded.Guardrails = benchGuardrails
	deployment := func(name, url string) policy.Deployment {
		return policy.Deployment{
			Name:           name,
			Provider:       "openai",
			Region:         benchRegion,
			Kind:           policy.KindCloud,
			BaseURL:        url,
			KeySource:      policy.KeySourceFile,
			KeyPath:        keyFile,
			TLS:            policy.TLS{Verify: true},
			TimeoutSeconds: 30,
			Retry:          policy.Retry{MaxAttempts: 1, Backoff: "exponential"},
			CircuitBreaker: policy.CircuitBreaker{FailureThreshold: 5, ResetTimeoutSeconds: 60},
			Enabled:        true,
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
			guarded,
		},
		Clients: []policy.Client{
			{ClientID: benchClient, Tenant: "bench", Tier: "bench-unlimited", Enabled: true},
			{ClientID: limitedClient, Tenant: "bench", Tier: "bench-far", Enabled: true},
			{ClientID: guardedClient, Tenant: "bench", Tier: "bench-guarded", Enabled: true},
		},
		Providers:   []policy.Provider{{Name: "openai", Kind: policy.ProviderOpenAI}},
		Deployments: []policy.Deployment{deployment("mock-"+benchRegion, mockURL), deployment("paced-"+benchRegion, pacedURL)},
		Models: []policy.Model{
			{ID: benchModel + "-" + benchRegion, Name: benchModel, Deployment: "mock-" + benchRegion, UpstreamModel: benchModel},
			{ID: pacedModel + "-" + benchRegion, Name: pacedModel, Deployment: "paced-" + benchRegion, UpstreamModel: benchModel},
		},
		ResidencyRules: []policy.ResidencyRule{{Residency: benchRegion, AllowedRegions: []string{benchRegion}}},
	}
}

// publishPolicy creates the PC_POLICY, PC_LIMITS and PC_WORKERS buckets, as the
// control plane does, and puts snap into PC_POLICY, sealed by signer.
func publishPolicy(ctx context.Context, natsURL, creds string, snap *policy.Snapshot, signer *signing.Signer) error {
	if err := snap.Validate(); err != nil {
		return fmt.Errorf("bench policy: %w", err)
	}
	encoded, err := policy.Encode(snap)
	if err != nil {
		return err
	}
	data := policy.Seal(encoded, signer)
	nc, err := nats.Connect(natsURL, nats.UserCredentials(creds))
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

// dataplaneFiles are the settings of a data plane's own files under tmp: every
// request is audited through its spool to NATS, as in production, and the JSON
// lines go to a file rather than the gateway's stdout.
func dataplaneFiles(tmp, name string) []string {
	return []string{
		"PORTCULLIS_AUDIT_SPOOL_DIR=" + filepath.Join(tmp, name+"-audit-spool"),
		"PORTCULLIS_AUDIT_SINK=" + filepath.Join(tmp, name+"-audit.jsonl"),
	}
}

// writeUpstreamKey makes the mock's key and writes it to a file in a directory of
// its own under tmp, the data plane's PORTCULLIS_KEY_DIR.
func writeUpstreamKey(tmp string) (key, dir, file string, err error) {
	if key, err = randomHex(24); err != nil {
		return "", "", "", err
	}
	dir = filepath.Join(tmp, "keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", err
	}
	file = filepath.Join(dir, "upstream.key")
	if err := os.WriteFile(file, []byte(key+"\n"), 0o600); err != nil {
		return "", "", "", err
	}
	return key, dir, file, nil
}

// childEnv is this process's environment without its PORTCULLIS_* variables: a
// data plane started by the benchmark gets only the settings it is given.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PORTCULLIS_") {
			env = append(env, kv)
		}
	}
	return env
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
