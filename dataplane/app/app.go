// Package app wires a Portcullis data plane together: the NATS connection, the
// policy cache watching PC_POLICY, the JWT verifier, the global limiter (PC_LIMITS and
// PC_WORKERS), the key manager (Vault, and key events on PC_KEYS), the audit
// publisher with its spool, the health reports, and the HTTP API (OpenAI- and
// Anthropic-compatible). It is exported so that cmd/dataplane and the cross-module
// tests start a data plane the same way.
//
// The long-running components (the policy watch, the limiter, the key manager's
// periodic check, the key events follower, the key-access publisher, the audit
// relay, the health reporter, the HTTP server and the metrics listener) each have
// the shape Run(ctx) error and run under one shared/rungroup group: a component
// that fails stops the others and closes App.Done. Stop shuts the HTTP server
// down, closes the metrics listener, ends the group's context, waits for the
// components within its deadline, and then closes the audit publisher, the key
// manager, Vault and NATS.
//
// /metrics (and /debug/pprof/ with Config.Pprof) are served on the metrics
// listener (Config.MetricsListen), never on the API's port.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/dataplane/internal/api"
	dpaudit "github.com/portcullis-gw/portcullis/dataplane/internal/audit"
	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/dataplane/internal/healthpub"
	"github.com/portcullis-gw/portcullis/dataplane/internal/keys"
	"github.com/portcullis-gw/portcullis/dataplane/internal/limits"
	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/dataplane/internal/tracing"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/dataplane/internal/usage"
	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsconn"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/rungroup"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// App is a running data plane. Its methods are safe for concurrent use.
type App struct {
	log    *slog.Logger
	nc     *nats.Conn
	policy *policycache.Cache
	limits *limits.Limiter
	srv    *http.Server
	ln     net.Listener
	keys   *keys.Manager
	vault  *vaultclient.Client // nil without Vault
	audit  *dpaudit.Publisher
	spool  *asyncAudit // spools events behind the answers
	sink   io.Closer   // the audit sink file, if any

	// tracer traces the API's requests and exports the spans; nil when tracing is
	// off. closeAll flushes it.
	tracer *tracing.Tracer

	// metricsSrv serves /metrics (and /debug/pprof/) apart from the API; nil when
	// the metrics listener is off.
	metricsSrv *httpmetrics.Server

	// group runs the components (policy watch, limiter, key manager, key events,
	// key-access publisher, audit relay, health reporter, HTTP server, metrics
	// listener) and bounds the JWKS refresh; Stop and Kill end its context.
	group *rungroup.Group

	stopOnce sync.Once
	stopErr  error
	closed   chan struct{} // closed once Stop or Kill has closed everything, even past Stop's deadline
}

// component is a long-running part of the App: it runs under the App's group until
// the group's context ends.
type component struct {
	name string
	run  func(context.Context) error
}

// Start connects to NATS, starts watching the policy (waiting, with retries, for
// the PC_POLICY bucket; it never creates it) and serves the API on cfg.Listen. It
// returns once the listener is open; /readyz answers 503 until the first policy
// snapshot has been applied. Zero fields of cfg that have a default get it, and the
// result is validated as LoadConfig does. ctx bounds startup only; call Stop to shut
// down. The components run under one group: if one fails, the others are stopped
// too, Done is closed and Err says which failed.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	return start(ctx, cfg, log, nil)
}

// start is Start, running extra components besides the App's own (a test seam).
func start(ctx context.Context, cfg Config, log *slog.Logger, extra []component) (*App, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	var problems config.Problems
	cfg.validate(&problems)
	if err := problems.Err(); err != nil {
		return nil, fmt.Errorf("dataplane config: %w", err)
	}
	log = log.With("region", cfg.Region, "worker", cfg.WorkerID)
	a := &App{log: log, group: rungroup.New(context.WithoutCancel(ctx), log), closed: make(chan struct{})}
	ok := false
	defer func() {
		if !ok { // no component is running yet
			a.group.Stop()
			a.closeAll(ctx)
			close(a.closed)
		}
	}()

	nc, err := natsconn.Connect(cfg.natsOptions(), log, nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, err
	}
	a.nc = nc
	js, err := natsconn.JetStream(nc, cfg.natsOptions())
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}

	metrics := httpmetrics.New("portcullis_dataplane")
	policyKeys, err := signing.LoadPublicKeys(splitList(cfg.PolicyPublicKeys)...)
	if err != nil {
		return nil, fmt.Errorf("policy-public-keys: %w", err)
	}
	if cfg.DevAllowEnvKeys {
		log.Warn("PORTCULLIS_DEV_ALLOW_ENV_KEYS is on: deployments may take their key from an environment variable, " +
			"where anything that can inspect the process can read it; never use this in production")
	} else if err := refuseEnvKeys(ctx, js, policyKeys); err != nil {
		return nil, err
	}
	if cfg.Vault.Enabled() {
		if a.vault, err = vaultclient.New(ctx, cfg.Vault, log); err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		log.Info("logged in to vault", "addr", logging.RedactURL(cfg.Vault.Addr), "auth", cfg.Vault.Auth)
	}
	auditKey, err := a.startAudit(ctx, cfg, js, log, metrics.Registry)
	if err != nil {
		return nil, err
	}
	a.spool = newAsyncAudit(a.audit, log)
	access, err := keys.NewAccessPublisher(js, cfg.Region, cfg.WorkerID, log, metrics.Registry)
	if err != nil {
		return nil, err
	}
	a.keys = keys.NewManager(keys.ManagerOptions{Vault: a.vault, AllowEnvKeys: cfg.DevAllowEnvKeys,
		KeyDir: cfg.KeyDir, AllowAnyKeyFile: cfg.DevAllowAnyKeyFile,
		WorkerID: cfg.WorkerID, Region: cfg.Region, Access: access.Publish, RefreshInterval: cfg.KeyRefreshInterval, Log: log})
	if cfg.DevAllowInsecureTLS {
		log.Warn("PORTCULLIS_DEV_ALLOW_INSECURE_TLS is on: deployments may turn upstream certificate verification off; never use this in production")
	}
	if cfg.DevAllowAnyKeyFile {
		log.Warn("PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE is on: key_source file may read any file this worker can, such as its Vault token, " +
			"and send it upstream; never use this in production")
	}
	if strings.TrimSpace(cfg.EgressAllowHosts) == "" { // validated: only with DevAllowAnyEgress
		log.Warn("PORTCULLIS_EGRESS_ALLOW_HOSTS is empty and PORTCULLIS_DEV_ALLOW_ANY_EGRESS is on: this worker calls any host a deployment names; " +
			"never use this in production")
	}
	egress, err := cfg.egress()
	if err != nil {
		return nil, err
	}
	upstreamMetrics, err := upstream.NewMetrics(metrics.Registry)
	if err != nil {
		return nil, fmt.Errorf("upstream metrics: %w", err)
	}
	a.policy, err = policycache.New(policycache.Options{
		JetStream: js, Region: cfg.Region, Log: log, Registerer: metrics.Registry, Verifier: policyKeys,
		Upstream: upstream.Options{AllowInsecureTLS: cfg.DevAllowInsecureTLS, Log: log, Metrics: upstreamMetrics,
			ErrorRateWindow: cfg.FallbackWindow, Egress: egress, Keys: a.keys},
	})
	if err != nil {
		return nil, err
	}
	a.limits, err = limits.New(limits.Options{
		JetStream: js, Connected: nc.IsConnected, WorkerID: cfg.WorkerID, Region: cfg.Region,
		FailPolicy: cfg.LimitsFailPolicy, OpTimeout: cfg.LimitsKVTimeout, IdleReturn: cfg.LimitsIdleReturn,
		Log: log, Registerer: metrics.Registry, Now: cfg.Clock, ClientLabels: cfg.MetricsClientLabels,
	})
	if err != nil {
		return nil, err
	}
	failOpen := cfg.LimitsFailPolicy == limits.FailOpen
	verifier, err := auth.NewVerifier(a.group.Context(), auth.Config{
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, JWKSURL: cfg.JWKSURL,
		AllowMissingJTI: cfg.JWTAllowMissingJTI, MaxLifetime: cfg.JWTMaxLifetime, RequiredType: cfg.JWTRequiredType,
	})
	if err != nil {
		return nil, err
	}
	// The policy's gateway settings narrow what tokens must carry, without a restart.
	a.policy.OnApply(func(p *policycache.Policy) {
		verifier.Expect(auth.Expectations{Issuer: p.Auth.Issuer, Audience: p.Auth.Audience, RequireClaims: p.Auth.RequireClaims})
	})
	trusted, _ := api.ParseTrustedProxies(cfg.TrustedProxies) // validated with the config
	var classifier api.Classifier
	if cfg.GuardrailsClassifierURL != "" {
		classifier = &api.HTTPClassifier{URL: cfg.GuardrailsClassifierURL, Timeout: cfg.GuardrailsClassifierTimeout}
	}
	if a.tracer, err = tracing.New(ctx, cfg.Tracing, tracing.Options{WorkerID: cfg.WorkerID, Region: cfg.Region, Log: log}); err != nil {
		return nil, err
	}
	handler := api.New(api.Options{
		Tracer:               a.tracer,
		Classifier:           classifier,
		Policy:               a.policy,
		Verifier:             verifier,
		Limiter:              a.limits,
		LimitsReady:          func() bool { return failOpen || a.limits.Ready() },
		PolicyAge:            a.policy.Age,
		PolicyMaxAge:         cfg.PolicyMaxAge,
		Region:               cfg.Region,
		ExposeRoutingHeaders: cfg.ExposeRoutingHeaders,
		MaxBodyBytes:         cfg.MaxBodyBytes,
		FallbackErrorRate:    cfg.FallbackErrorRate,
		Log:                  log,
		Metrics:              metrics,
		Worker:               cfg.WorkerID,
		Audit:                a.spool,
		AuditKey:             auditKey,
		AuditHeaders:         splitList(cfg.AuditHeaders),
		MaxUnauthenticated:   cfg.MaxUnauthenticated,
		TrustedProxies:       trusted,
	})

	var lc net.ListenConfig
	a.ln, err = lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	if cfg.ProxyProtocol {
		if a.ln, err = trusted.ProxyProtocol(a.ln); err != nil {
			return nil, fmt.Errorf("proxy-protocol: %w", err)
		}
	}
	if a.metricsSrv, err = metrics.Listen(ctx, cfg.MetricsListen, cfg.Pprof, log); err != nil {
		_ = a.ln.Close()
		return nil, err
	}
	a.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// No ReadTimeout or WriteTimeout: both would cut streamed answers, which may
		// legitimately run for minutes. The API bounds body reads itself.
	}

	reporter := healthpub.New(healthpub.Options{Conn: nc, Policy: a.policy, Worker: cfg.WorkerID, Region: cfg.Region, Log: log})
	components := []component{
		// builds the tokenizer's vocabulary before a request needs it, and is done
		{"tokenizer warm-up", func(context.Context) error { usage.Warm(); return nil }},
		{"health reporter", reporter.Run},
		{"policy watch", a.policy.Run},
		{"key manager", a.keys.Run},
		{"key events", func(ctx context.Context) error { return keys.Follow(ctx, js, a.keys, log) }},
		{"key-access publisher", access.Run},
		{"audit relay", a.audit.Run},
		{"limiter", a.limits.Run},
		{"http server", rungroup.HTTPServer{Server: a.srv, Listener: a.ln}.Run},
	}
	if a.metricsSrv != nil {
		components = append(components, component{"metrics listener", a.metricsSrv.Run})
	}
	for _, c := range append(components, extra...) {
		a.group.Go(c.name, c.run)
	}
	log.Info("data plane listening", "addr", a.ln.Addr().String(), "jwks_url", logging.RedactURL(cfg.JWKSURL), "issuer", cfg.JWTIssuer,
		"nats", logging.RedactURL(cfg.NATSURL), "policy_max_age", cfg.PolicyMaxAge.String())
	ok = true
	return a, nil
}

// Addr is the address the API listens on (useful when Listen used port 0).
func (a *App) Addr() string { return a.ln.Addr().String() }

// MetricsAddr is the address the metrics listener is bound to (with the real port
// when MetricsListen used port 0), "" when it is off.
func (a *App) MetricsAddr() string { return a.metricsSrv.Addr() }

// PolicyVersion is the version of the policy in use, or 0 before the first snapshot.
func (a *App) PolicyVersion() int64 { return a.policy.Version() }

// Done is closed when the App's components are told to stop: by Stop or Kill, or
// because one of them failed, which Err then reports. A process that sees it closed
// before it asked for a stop should call Stop and exit.
func (a *App) Done() <-chan struct{} { return a.group.Done() }

// Err reports the components that failed (each named), nil if none has.
func (a *App) Err() error { return a.group.Err() }

// Kill stops the worker the way a crash would, for tests of crash recovery: the
// NATS connection goes first, so no lease or concurrency slot is given back and
// the heartbeat is left to expire; then every client connection is cut. It returns
// once every component has returned.
func (a *App) Kill() {
	a.stopOnce.Do(func() {
		a.nc.Close()
		_ = a.srv.Close()
		a.metricsSrv.Close()
		a.group.Stop()
		<-a.group.Finished()
		// No deadline: NATS is closed, so the audit publisher's drain ends at once.
		a.closeAll(context.Background())
		close(a.closed)
		a.log.Info("data plane killed")
	})
}

// Stop stops accepting requests, waits for in-flight ones for half the time ctx has
// left (then cuts them), closes the metrics listener, stops the components (the
// limiter gives back the limit budget it holds, the policy watch ends) and waits
// for them, then closes the audit
// publisher (draining its spool while ctx allows), the key manager, Vault and the
// NATS connection. It returns by ctx's deadline even if a component does not stop:
// the error then wraps ctx's and names the components still running, and the rest
// is closed under them. The error also reports any component that failed. It is
// idempotent; later calls return the first call's result.
func (a *App) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() { a.stopErr = a.stop(ctx) })
	return a.stopErr
}

func (a *App) stop(ctx context.Context) error {
	var errs []error
	if err := rungroup.Drain(ctx, a.srv, a.log); err != nil {
		errs = append(errs, err)
	}
	_ = a.ln.Close() // already closed, unless the server never got to serve it
	// The metrics stay up while the API drains; scrapes and profiles still in
	// flight are then cut, which loses nothing.
	a.metricsSrv.Close()
	a.group.Stop()
	if err := a.group.Wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("components: %w", err))
	}
	if err := rungroup.CloseWithin(ctx, a.closed, func() { a.closeAll(ctx) }); err != nil {
		errs = append(errs, fmt.Errorf("closing the audit publisher, keys and NATS: %w", err))
	}
	err := errors.Join(errs...)
	if err == nil {
		a.log.Info("data plane stopped")
	} else {
		a.log.Error("data plane stopped with errors", "err", err)
	}
	return err
}

// closeAll closes what the components used, once they are done with it (or Stop
// ran out of time waiting for them): the audit publisher (its drain bounded by
// ctx), the key manager, Vault and the NATS connection, then the tracer (flushing
// its spans with what is left of ctx; the audit goes first).
func (a *App) closeAll(ctx context.Context) {
	a.closeKeys(ctx)
	if a.nc != nil {
		a.nc.Close()
	}
	if err := a.tracer.Shutdown(ctx); err != nil {
		a.log.Warn("spans not exported by the stop's deadline are lost", "err", err)
	}
}

// closeKeys ends the key manager's lease keeping and the Vault token's renewal, and
// closes the audit publisher, draining its spool while ctx allows (what it could
// not publish stays in the spool).
func (a *App) closeKeys(ctx context.Context) {
	if a.spool != nil {
		a.spool.Wait()
	}
	if a.audit != nil {
		if err := a.audit.Shutdown(ctx); err != nil {
			a.log.Error("closing the audit publisher", "err", err)
		}
	}
	if a.sink != nil {
		_ = a.sink.Close()
	}
	if a.keys != nil {
		a.keys.Close()
	}
	if a.vault != nil {
		a.vault.Close()
	}
}

// refuseEnvKeys refuses to start a worker whose policy already names a deployment
// with key_source env while the dev flag is off: a key in an environment variable is
// readable by anything that can inspect the process. A later snapshot naming one
// leaves that deployment unusable (503 upstream_key_unavailable) instead. A policy
// not published yet, or unreadable, is the policy cache's business.
func refuseEnvKeys(ctx context.Context, js jetstream.JetStream, keys *signing.Verifier) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, natsnames.PolicyBucket)
	if err != nil {
		return nil
	}
	e, err := kv.Get(ctx, natsnames.PolicySnapshotKey)
	if err != nil {
		return nil
	}
	s, err := policy.DecodeSigned(e.Value(), keys)
	if err != nil {
		return nil
	}
	var names []string
	for _, d := range s.Deployments {
		if d.KeySource == policy.KeySourceEnv {
			names = append(names, d.Name)
		}
	}
	if len(names) > 0 {
		return fmt.Errorf("deployments %v take their key from an environment variable (key_source env), which is refused: "+
			"use key_source vault, or file in development; PORTCULLIS_DEV_ALLOW_ENV_KEYS=true allows it, for development only", names)
	}
	return nil
}
