// Package app wires a Portcullis data plane together: the NATS connection, the
// policy cache watching PC_POLICY, the JWT verifier, the global limiter (PC_LIMITS and
// PC_WORKERS), the key manager (Vault, and key events on PC_KEYS), the audit
// publisher with its spool, the health reports, and the HTTP API (OpenAI- and
// Anthropic-compatible). It is exported so that cmd/dataplane and the cross-module
// tests start a data plane the same way.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/dataplane/internal/usage"
	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/natsconn"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/vaultclient"
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

	cancel context.CancelFunc // stops the policy watch, the limiter and the JWKS refresh
	wg     sync.WaitGroup     // the policy watch, the limiter and the HTTP server

	stopOnce sync.Once
	stopErr  error
}

// Start connects to NATS, starts watching the policy (waiting, with retries, for
// the PC_POLICY bucket; it never creates it) and serves the API on cfg.Listen. It
// returns once the listener is open; /readyz answers 503 until the first policy
// snapshot has been applied. Zero fields of cfg that have a default get it, and the
// result is validated as LoadConfig does. ctx bounds startup only; call Stop to shut
// down.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
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
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &App{log: log, cancel: cancel}
	ok := false
	defer func() {
		if !ok {
			cancel()
			a.closeKeys()
			if a.nc != nil {
				a.nc.Close()
			}
		}
	}()

	nc, err := natsconn.Connect(cfg.natsOptions(), log, nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, err
	}
	a.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}

	metrics := httpmetrics.New("portcullis_dataplane")
	if cfg.DevAllowEnvKeys {
		log.Warn("PORTCULLIS_DEV_ALLOW_ENV_KEYS is on: deployments may take their key from an environment variable, " +
			"where anything that can inspect the process can read it; never use this in production")
	} else if err := refuseEnvKeys(ctx, js); err != nil {
		return nil, err
	}
	if cfg.Vault.Enabled() {
		if a.vault, err = vaultclient.New(ctx, cfg.Vault, log); err != nil {
			return nil, fmt.Errorf("vault: %w", err)
		}
		log.Info("logged in to vault", "addr", cfg.Vault.Addr, "auth", cfg.Vault.Auth)
	}
	auditKey, err := a.startAudit(ctx, cfg, js, log, metrics.Registry)
	if err != nil {
		return nil, err
	}
	a.spool = newAsyncAudit(a.audit, log)
	access, err := keys.NewAccessPublisher(js, cfg.WorkerID, log, metrics.Registry)
	if err != nil {
		return nil, err
	}
	a.keys = keys.NewManager(keys.ManagerOptions{Vault: a.vault, AllowEnvKeys: cfg.DevAllowEnvKeys,
		WorkerID: cfg.WorkerID, Region: cfg.Region, Access: access.Publish, RefreshInterval: cfg.KeyRefreshInterval, Log: log})
	if cfg.DevAllowInsecureTLS {
		log.Warn("PORTCULLIS_DEV_ALLOW_INSECURE_TLS is on: deployments may turn upstream certificate verification off; never use this in production")
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
		JetStream: js, Region: cfg.Region, Log: log, Registerer: metrics.Registry,
		Upstream: upstream.Options{AllowInsecureTLS: cfg.DevAllowInsecureTLS, Log: log, Metrics: upstreamMetrics,
			ErrorRateWindow: cfg.FallbackWindow, Egress: egress, Keys: a.keys},
	})
	if err != nil {
		return nil, err
	}
	a.limits, err = limits.New(limits.Options{
		JetStream: js, Connected: nc.IsConnected, WorkerID: cfg.WorkerID, Region: cfg.Region,
		FailPolicy: cfg.LimitsFailPolicy, OpTimeout: cfg.LimitsKVTimeout, IdleReturn: cfg.LimitsIdleReturn,
		Log: log, Registerer: metrics.Registry,
	})
	if err != nil {
		return nil, err
	}
	failOpen := cfg.LimitsFailPolicy == limits.FailOpen
	verifier, err := auth.NewVerifier(runCtx, auth.Config{
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, JWKSURL: cfg.JWKSURL,
	})
	if err != nil {
		return nil, err
	}
	handler := api.New(api.Options{
		Policy:               a.policy,
		Verifier:             verifier,
		Limiter:              a.limits,
		LimitsReady:          func() bool { return failOpen || a.limits.Ready() },
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
	})

	var lc net.ListenConfig
	a.ln, err = lc.Listen(ctx, "tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
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

	a.wg.Go(usage.Warm) // builds the tokenizer's vocabulary before a request needs it
	reporter := healthpub.New(healthpub.Options{Conn: nc, Policy: a.policy, Worker: cfg.WorkerID, Region: cfg.Region, Log: log})
	a.wg.Go(func() { _ = reporter.Run(runCtx) })
	a.wg.Go(func() { _ = a.policy.Run(runCtx) })
	a.keys.Start()
	a.wg.Go(func() { keys.Follow(runCtx, js, a.keys, log) })
	a.wg.Go(func() { access.Run(runCtx) })
	a.wg.Go(func() {
		if err := a.audit.Run(runCtx); err != nil {
			log.Error("audit relay stopped", "err", err)
		}
	})
	a.wg.Go(func() {
		if err := a.limits.Run(runCtx); err != nil {
			log.Error("limiter stopped", "err", err)
		}
	})
	a.wg.Go(func() {
		if err := a.srv.Serve(a.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	})
	log.Info("data plane listening", "addr", a.ln.Addr().String(), "jwks_url", cfg.JWKSURL, "issuer", cfg.JWTIssuer)
	ok = true
	return a, nil
}

// Addr is the address the API listens on (useful when Listen used port 0).
func (a *App) Addr() string { return a.ln.Addr().String() }

// PolicyVersion is the version of the policy in use, or 0 before the first snapshot.
func (a *App) PolicyVersion() int64 { return a.policy.Version() }

// Kill stops the worker the way a crash would, for tests of crash recovery: the
// NATS connection goes first, so no lease or concurrency slot is given back and
// the heartbeat is left to expire; then every client connection is cut.
func (a *App) Kill() {
	a.stopOnce.Do(func() {
		a.nc.Close()
		_ = a.srv.Close()
		a.cancel()
		a.wg.Wait()
		a.closeKeys()
		a.log.Info("data plane killed")
	})
}

// Stop stops accepting requests, waits for in-flight ones until ctx is done (then
// closes them), gives back the limit budget it holds, stops the policy watch and
// closes the NATS connection. It is idempotent; later calls return the first
// call's result.
func (a *App) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() {
		if err := a.srv.Shutdown(ctx); err != nil {
			_ = a.srv.Close()
			a.stopErr = fmt.Errorf("shut down http server: %w", err)
		}
		a.cancel()
		a.wg.Wait()
		a.closeKeys()
		a.nc.Close()
		a.log.Info("data plane stopped")
	})
	return a.stopErr
}

// closeKeys ends the key manager's lease keeping and the Vault token's renewal, and
// closes the audit publisher (what it could not publish stays in the spool).
func (a *App) closeKeys() {
	if a.spool != nil {
		a.spool.Wait()
	}
	if a.audit != nil {
		if err := a.audit.Close(); err != nil {
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
func refuseEnvKeys(ctx context.Context, js jetstream.JetStream) error {
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
	s, err := policy.Decode(e.Value())
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
