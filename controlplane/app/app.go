package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/controlplane/internal/admintoken"
	"github.com/portcullis-gw/portcullis/controlplane/internal/devissuer"
	"github.com/portcullis-gw/portcullis/controlplane/internal/health"
	"github.com/portcullis-gw/portcullis/controlplane/internal/publisher"
	"github.com/portcullis-gw/portcullis/controlplane/internal/rotator"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/vaultclient"
	"github.com/portcullis-gw/portcullis/web"
)

var _ publisher.SnapshotSource = (*store.Store)(nil)

// App is a running control plane. Its methods are safe for concurrent use.
type App struct {
	log       *slog.Logger
	addr      string
	natsURL   string
	issuerURL string

	st      *store.Store
	natsSrv *server.Server // nil when an external NATS is used
	nc      *nats.Conn
	pub     *publisher.Publisher
	health  *health.Collector
	httpSrv *http.Server
	vault   *vaultclient.Client // nil without Vault
	rotator *rotator.Rotator

	stopKeys context.CancelFunc // stops the rotator and the key-access ingest
	keysDone sync.WaitGroup

	stopAudit context.CancelFunc // stops the audit ingest; nil when it is off
	auditDone chan struct{}

	stopAnomaly context.CancelFunc // stops the anomaly detector; nil when it is off
	anomalyDone chan struct{}

	stopPublisher context.CancelFunc
	publisherDone chan struct{}
	serveDone     chan struct{}

	stopOnce sync.Once
	stopErr  error
}

// Start opens Postgres and applies migrations, makes sure an admin token exists,
// connects to NATS (starting the embedded server when cfg.NATSURL is empty), ensures
// the PC_POLICY, PC_LIMITS and PC_WORKERS buckets, starts the policy publisher, the
// key rotator, the audit ingest (unless cfg.AuditIngest is off), the anomaly detector
// (unless cfg.AnomalyCheckInterval is 0) and the collector of
// the workers' health reports, and serves HTTP on cfg.Listen.
// ctx bounds start-up only; the App runs until Stop. On error everything already
// started is stopped again.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (_ *App, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{log: log}
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = a.Stop(stopCtx)
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if a.st, err = store.Open(ctx, cfg.DatabaseURL); err != nil {
		return nil, err
	}
	if err := a.st.Migrate(ctx); err != nil {
		return nil, err
	}
	if err := admintoken.Bootstrap(ctx, a.st, cfg.DataDir, log); err != nil {
		return nil, err
	}

	a.natsURL = cfg.NATSURL
	if a.natsURL == "" {
		if a.natsSrv, err = startEmbeddedNATS(cfg); err != nil {
			return nil, err
		}
		a.natsURL = a.natsSrv.ClientURL()
		log.Info("embedded nats-server started", "url", a.natsURL)
	}
	if a.nc, err = connectNATS(cfg, a.natsURL, log); err != nil {
		return nil, err
	}
	kv, err := ensureBuckets(ctx, a.nc, cfg)
	if err != nil {
		return nil, err
	}

	metrics := httpmetrics.New("portcullis_controlplane")
	a.pub = publisher.New(a.st, kv, publisher.Options{Interval: cfg.PublishInterval, Log: log})
	metrics.Registry.MustRegister(a.pub.Collectors()...)
	pubCtx, stopPublisher := context.WithCancel(context.WithoutCancel(ctx))
	a.stopPublisher, a.publisherDone = stopPublisher, make(chan struct{})
	go func() {
		defer close(a.publisherDone)
		_ = a.pub.Run(pubCtx)
	}()

	if err := a.startKeys(ctx, cfg, log); err != nil {
		return nil, err
	}

	if err := a.startAudit(ctx, cfg, metrics.Registry); err != nil {
		return nil, err
	}

	if err := a.startAnomaly(ctx, cfg); err != nil {
		return nil, err
	}

	a.health = health.New(a.nc, health.Options{Log: log})
	metrics.Registry.MustRegister(a.health.Collectors()...)
	if err := a.health.Start(); err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	a.addr = ln.Addr().String()
	a.issuerURL = strings.TrimRight(cfg.IssuerURL, "/")
	if a.issuerURL == "" {
		a.issuerURL = issuerFor(a.addr)
	}
	e, err := a.routes(cfg, metrics)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	a.httpSrv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	a.serveDone = make(chan struct{})
	go func() {
		defer close(a.serveDone)
		if err := a.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("control plane started", "addr", a.addr, "nats", a.natsURL, "dev_issuer", cfg.DevIssuer)
	return a, nil
}

// routes builds the HTTP handler.
func (a *App) routes(cfg Config, metrics *httpmetrics.HTTP) (*echo.Echo, error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = adminapi.ErrorHandler(a.log)
	e.Use(middleware.RequestID(), observe(metrics, a.log), recoverPanics(a.log))

	ready := readiness{pingDB: a.st.Ping, natsConnected: a.nc.IsConnected, published: a.pub.Version}
	e.GET("/healthz", ready.healthz)
	e.GET("/readyz", ready.readyz)
	e.GET("/metrics", echo.WrapHandler(metrics.Handler()))
	e.GET("/", echo.WrapHandler(web.Handler()))

	admin := e.Group("/admin/v1", admintoken.Middleware(a.st))
	onChange := func() { a.pub.Notify(); a.rotator.Nudge() }
	api := adminapi.New(a.st, a.log, onChange, a.health).WithSecrets(a.rotator)
	if cfg.DevAllowEnvKeys {
		api.AllowEnvKeys()
	}
	api.Register(admin)
	if !cfg.DevIssuer {
		admin.POST(devissuer.MintPath, func(echo.Context) error {
			return apierr.New(apierr.NotFound, "the development token issuer is off; start the control plane with --dev-issuer")
		})
		return e, nil
	}
	iss, err := devissuer.New(cfg.DataDir, a.issuerURL, a.log)
	if err != nil {
		return nil, err
	}
	iss.Register(e, admin, clientDirectory{a.st}, a.log)
	return e, nil
}

// Addr is the address the HTTP server listens on (host:port, with the real port when
// Listen asked for port 0).
func (a *App) Addr() string { return a.addr }

// NATSURL is the URL data planes should use: the configured one, or the embedded
// server's.
func (a *App) NATSURL() string { return a.natsURL }

// IssuerURL is the dev issuer's iss (configured, or derived from Addr).
func (a *App) IssuerURL() string { return a.issuerURL }

// JWKSURL is where the dev issuer serves its public keys (when it is on).
func (a *App) JWKSURL() string { return a.issuerURL + devissuer.JWKSPath }

// PolicyVersion is the newest policy version known to be in PC_POLICY, 0 before the
// first publish.
func (a *App) PolicyVersion() int64 {
	if a.pub == nil {
		return 0
	}
	return a.pub.Version()
}

// Stop shuts everything down in order (HTTP server, health collector, key rotator,
// anomaly detector, audit ingest, publisher, NATS connection, embedded server, store) within ctx's
// deadline. It is idempotent: later calls return the first call's result.
func (a *App) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() { a.stopErr = a.stop(ctx) })
	return a.stopErr
}

func (a *App) stop(ctx context.Context) error {
	var errs []error
	if a.httpSrv != nil {
		if err := a.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			_ = a.httpSrv.Close()
		}
		if err := wait(ctx, a.serveDone); err != nil {
			errs = append(errs, fmt.Errorf("http server: %w", err))
		}
	}
	if a.health != nil {
		if err := a.health.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("health collector: %w", err))
		}
	}
	if a.stopKeys != nil {
		a.stopKeys()
		a.keysDone.Wait()
	}
	if a.stopAnomaly != nil {
		a.stopAnomaly()
		if err := wait(ctx, a.anomalyDone); err != nil {
			errs = append(errs, fmt.Errorf("anomaly detector: %w", err))
		}
	}
	if a.stopAudit != nil {
		a.stopAudit()
		if err := wait(ctx, a.auditDone); err != nil {
			errs = append(errs, fmt.Errorf("audit ingest: %w", err))
		}
	}
	if a.vault != nil {
		a.vault.Close()
	}
	if a.stopPublisher != nil {
		a.stopPublisher()
		if err := wait(ctx, a.publisherDone); err != nil {
			errs = append(errs, fmt.Errorf("publisher: %w", err))
		}
	}
	if a.nc != nil {
		a.nc.Close()
	}
	if a.natsSrv != nil {
		a.natsSrv.Shutdown()
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.natsSrv.WaitForShutdown()
		}()
		if err := wait(ctx, done); err != nil {
			errs = append(errs, fmt.Errorf("embedded nats: %w", err))
		}
	}
	if a.st != nil {
		a.st.Close()
	}
	err := errors.Join(errs...)
	if err == nil {
		a.log.Info("control plane stopped")
	}
	return err
}

// wait blocks until done is closed or ctx ends.
func wait(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
