package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"
	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/admintoken"
	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/controlplane/internal/console"
	"github.com/portcullis-gw/portcullis/controlplane/internal/devissuer"
	"github.com/portcullis-gw/portcullis/controlplane/internal/health"
	"github.com/portcullis-gw/portcullis/controlplane/internal/publisher"
	"github.com/portcullis-gw/portcullis/controlplane/internal/rotator"
	"github.com/portcullis-gw/portcullis/controlplane/internal/signin"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/rungroup"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

var _ publisher.SnapshotSource = (*store.Store)(nil)

// App is a running control plane. Its methods are safe for concurrent use.
type App struct {
	log       *slog.Logger
	addr      string
	natsURL   string
	issuerURL string
	// policyKey is the policy signing key's file; its public key is beside it.
	policyKey string

	st       *store.Store
	natsSrv  *server.Server      // nil when an external NATS is used
	natsAuth *natsauth.Authority // the embedded nats-server's operator and account; nil with an external NATS
	nc       *nats.Conn
	pub      *publisher.Publisher
	health   *health.Collector
	httpSrv  *http.Server
	ln       net.Listener        // the HTTP server's; Stop closes it even if the server never served it
	vault    *vaultclient.Client // nil without Vault
	rotator  *rotator.Rotator

	// auditSigner signs the audit checkpoints and exports; its key is in auditKeyFile.
	auditSigner  *signing.Signer
	auditKeyFile string

	// alerts raises every alert: alerts table, PC_ALERTS, webhook.
	alerts *alerting.Alerter

	// metricsSrv serves /metrics (and /debug/pprof/) apart from the HTTP server;
	// nil when the metrics listener is off.
	metricsSrv *httpmetrics.Server

	// group runs the components (publisher, rotator, key-access ingest, audit ingest,
	// anomaly detector, health collector, HTTP server, metrics listener); Stop ends
	// its context.
	group *rungroup.Group

	stopOnce sync.Once
	stopErr  error
	closed   chan struct{} // closed once Stop has closed the connections, even past its deadline
}

// component is a long-running part of the App: it runs under the App's group until
// the group's context ends.
type component struct {
	name string
	run  func(context.Context) error
}

// Start opens Postgres and applies migrations, makes sure an admin token exists,
// connects to NATS (starting the embedded server when cfg.NATSURL is empty), ensures
// the PC_POLICY, PC_LIMITS and PC_WORKERS buckets, starts the policy publisher, the
// key rotator and the key-access ingest, the audit ingest (unless cfg.AuditIngest is
// off), the anomaly detector (unless cfg.AnomalyCheckInterval is 0) and the collector
// of the workers' health reports, serves HTTP on cfg.Listen, and serves /metrics
// (with cfg.Pprof also /debug/pprof/) on cfg.MetricsListen unless it is "off" or
// empty, never on cfg.Listen. Each of these components runs under one group: if one
// fails, the others are stopped too, Done is closed and Err says which failed.
// ctx bounds start-up only; the App runs until Stop. On error everything already
// started is stopped again.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*App, error) {
	return start(ctx, cfg, log, nil)
}

// start is Start, running extra components besides the App's own (a test seam).
func start(ctx context.Context, cfg Config, log *slog.Logger, extra []component) (_ *App, err error) {
	if cfg.MetricsListen == "" { // a Config built by hand: no fixed port that another App would share
		cfg.MetricsListen = httpmetrics.ListenOff
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	a := &App{log: log, group: rungroup.New(context.WithoutCancel(ctx), log), closed: make(chan struct{})}
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
		if a.natsAuth, err = natsauth.LoadOrCreate(NATSAuthDir(cfg.DataDir)); err != nil {
			return nil, err
		}
		if a.natsSrv, err = startEmbeddedNATS(cfg, a.natsAuth); err != nil {
			return nil, err
		}
		a.natsURL = a.natsSrv.ClientURL()
		// The control plane connects as itself; ops.creds is there for an operator's
		// read-only tools, the data planes' credentials are issued by NATSCreds.
		if cfg.NATSCreds, err = a.natsAuth.WriteCreds(natsauth.ControlPlane()); err != nil {
			return nil, err
		}
		if _, err = a.natsAuth.WriteCreds(natsauth.Ops()); err != nil {
			return nil, err
		}
		log.Info("embedded nats-server started", "url", logging.RedactURL(a.natsURL), "credentials", a.natsAuth.Dir())
	}
	if a.nc, err = connectNATS(cfg, a.natsURL, log); err != nil {
		return nil, err
	}
	kv, err := ensureBuckets(ctx, a.nc, cfg)
	if err != nil {
		return nil, err
	}

	metrics := httpmetrics.New("portcullis_controlplane")
	signer, err := a.policySigner(cfg, log)
	if err != nil {
		return nil, err
	}
	a.pub = publisher.New(a.st, kv, publisher.Options{Interval: cfg.PublishInterval, Log: log, Signer: signer})
	metrics.Registry.MustRegister(a.pub.Collectors()...)
	a.group.Go("policy publisher", a.pub.Run)

	if err := a.startAlerts(cfg); err != nil {
		return nil, err
	}

	if err := a.startKeys(ctx, cfg, log); err != nil {
		return nil, err
	}

	if err := a.startAudit(cfg, metrics.Registry); err != nil {
		return nil, err
	}

	if err := a.startCheckpoints(cfg, metrics.Registry); err != nil {
		return nil, err
	}

	if err := a.startAnomaly(cfg); err != nil {
		return nil, err
	}

	a.health = health.New(a.nc, a.healthOptions(cfg, log))
	metrics.Registry.MustRegister(a.health.Collectors()...)
	if err := a.health.Subscribe(); err != nil { // before Start returns: no report is missed
		return nil, err
	}
	a.group.Go("health collector", a.health.Run)

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
	a.ln = ln
	a.group.Go("http server", rungroup.HTTPServer{Server: a.httpSrv, Listener: ln}.Run)
	if a.metricsSrv, err = metrics.Listen(ctx, cfg.MetricsListen, cfg.Pprof, log); err != nil {
		return nil, err
	}
	if a.metricsSrv != nil {
		a.group.Go("metrics listener", a.metricsSrv.Run)
	}
	for _, c := range extra {
		a.group.Go(c.name, c.run)
	}
	log.Info("control plane started", "addr", a.addr, "nats", logging.RedactURL(a.natsURL), "dev_issuer", cfg.DevIssuer)
	return a, nil
}

// routes builds the HTTP handler.
func (a *App) routes(cfg Config, metrics *httpmetrics.HTTP) (*echo.Echo, error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = adminapi.ErrorHandler(a.log)
	e.Use(dropClientRequestID, middleware.RequestID(), observe(metrics, a.log), recoverPanics(a.log))

	ready := readiness{pingDB: a.st.Ping, natsConnected: a.nc.IsConnected, published: a.pub.Version}
	e.GET("/healthz", ready.healthz)
	e.GET("/readyz", ready.readyz)
	con, err := console.New(a.st, a.log)
	if err != nil {
		return nil, err
	}
	con.ReadLimits(limitsReader(a.nc))

	e.IPExtractor = ipExtractor(cfg.trustedProxies())
	onChange := func() { a.pub.Notify(); a.rotator.Nudge() }
	api := adminapi.New(a.st, a.log, onChange, a.health).WithSecrets(a.rotator).WithTokenMaxTTL(cfg.AdminTokenMaxTTL)
	api.KeyFiles(cfg.KeyDir, cfg.DevAllowAnyKeyFile)
	if cfg.DevAllowEnvKeys {
		api.AllowEnvKeys()
	}
	if cfg.AlertWebhookAllowPrivate {
		api.AllowPrivateWebhooks()
	}
	api.WithAuditSigner(a.auditSigner)
	admin := api.Mount(e, adminauth.Authenticate(a.st))
	con.Register(e)
	if err := a.signIn(e, cfg); err != nil {
		return nil, err
	}
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
	con.OfferMinting()
	return e, nil
}

// signIn serves the OIDC sign-in routes when an identity provider is configured.
func (a *App) signIn(e *echo.Echo, cfg Config) error {
	if cfg.OIDC.Issuer == "" {
		return nil
	}
	secret, err := secretfile.Read(config.EnvName("oidc-client-secret-file"), cfg.OIDC.ClientSecretFile, 64<<10)
	if err != nil {
		return err
	}
	roles, err := signin.ParseRoleMap(cfg.OIDC.RoleMap)
	if err != nil {
		return fmt.Errorf("oidc-role-map: %w", err)
	}
	public := strings.TrimRight(cfg.PublicURL, "/")
	if public == "" {
		public = "http://" + a.addr
	}
	u, err := url.Parse(public)
	if err != nil {
		return fmt.Errorf("public-url: %w", err)
	}
	var scopes []string
	for _, sc := range strings.Split(cfg.OIDC.Scopes, ",") {
		if sc = strings.TrimSpace(sc); sc != "" {
			scopes = append(scopes, sc)
		}
	}
	signin.New(signin.Config{
		Issuer: cfg.OIDC.Issuer, ClientID: cfg.OIDC.ClientID, ClientSecret: strings.TrimSpace(string(secret)),
		RedirectURL: public + signin.CallbackPath, Scopes: scopes, RoleClaim: cfg.OIDC.RoleClaim, NameClaim: cfg.OIDC.NameClaim,
		RoleMap: roles, IdleTimeout: cfg.OIDC.IdleTimeout, MaxAge: cfg.OIDC.MaxAge, CLITokenTTL: cfg.OIDC.CLITokenTTL,
		SecureCookies: u.Scheme == "https" || !isLoopbackHost(u.Hostname()),
	}, a.st, a.log).Register(e)
	a.log.Info("OIDC sign-in on", "issuer", cfg.OIDC.Issuer, "redirect_url", public+signin.CallbackPath)
	return nil
}

// policySigner loads (or, the first time, generates) the key that signs policy
// snapshots.
func (a *App) policySigner(cfg Config, log *slog.Logger) (*signing.Signer, error) {
	a.policyKey = cfg.PolicySigningKeyFile
	if a.policyKey == "" {
		a.policyKey = filepath.Join(cfg.DataDir, "policy-signing-key.pem")
	}
	signer, created, err := signing.LoadOrCreate(a.policyKey)
	if err != nil {
		return nil, fmt.Errorf("policy-signing-key-file: %w", err)
	}
	if created {
		log.Warn("generated a policy signing key; give its public key to every data plane (PORTCULLIS_POLICY_PUBLIC_KEYS)",
			"key_id", signer.KeyID(), "public_key_file", signing.PublicPath(a.policyKey))
	} else {
		log.Info("policy signing key loaded", "key_id", signer.KeyID())
	}
	return signer, nil
}

// PolicyPublicKeyFile is the file holding the public key of the policy signing key,
// for the data planes' PORTCULLIS_POLICY_PUBLIC_KEYS.
func (a *App) PolicyPublicKeyFile() string { return signing.PublicPath(a.policyKey) }

// Addr is the address the HTTP server listens on (host:port, with the real port when
// Listen asked for port 0).
func (a *App) Addr() string { return a.addr }

// MetricsAddr is the address the metrics listener is bound to (with the real port
// when MetricsListen asked for port 0), "" when it is off.
func (a *App) MetricsAddr() string { return a.metricsSrv.Addr() }

// NATSURL is the URL data planes should use: the configured one, or the embedded
// server's.
func (a *App) NATSURL() string { return a.natsURL }

// NATSCreds writes new credentials of role r for the embedded nats-server and
// returns the file's path, under NATSAuthDir. With an external NATS the control
// plane issues no credentials: that server's operator does (controlplane nats-auth).
func (a *App) NATSCreds(r natsauth.Role) (string, error) {
	if a.natsAuth == nil {
		return "", errors.New("the control plane issues NATS credentials only for its embedded nats-server")
	}
	return a.natsAuth.WriteCreds(r)
}

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

// Done is closed when the App's components are told to stop: by Stop, or because
// one of them failed, which Err then reports. A process that sees it closed before
// it asked for a stop should call Stop and exit.
func (a *App) Done() <-chan struct{} { return a.group.Done() }

// Err reports the components that failed (each named), nil if none has.
func (a *App) Err() error { return a.group.Err() }

// Stop shuts everything down within ctx's deadline: it shuts the HTTP server down
// (letting the requests in flight finish for half the time ctx has left, then
// cutting them), closes the metrics listener, stops the other components (health
// collector, key rotator and key-access ingest, anomaly detector, audit ingest,
// publisher) and waits for them, then closes the Vault
// client, the NATS connection, the embedded server and the store. It returns by
// ctx's deadline even if a component does not stop: the error then wraps ctx's and
// names the components still running, and the connections are closed under them.
// The error also reports any component that failed. Stop is idempotent: later calls
// return the first call's result.
func (a *App) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() { a.stopErr = a.stop(ctx) })
	return a.stopErr
}

func (a *App) stop(ctx context.Context) error {
	var errs []error
	if a.httpSrv != nil {
		if err := rungroup.Drain(ctx, a.httpSrv, a.log); err != nil {
			errs = append(errs, err)
		}
		_ = a.ln.Close() // already closed, unless the server never got to serve it
	}
	// The metrics stay up while the HTTP server drains; scrapes and profiles still in
	// flight are then cut, which loses nothing.
	a.metricsSrv.Close()
	a.group.Stop()
	if err := a.group.Wait(ctx); err != nil {
		errs = append(errs, fmt.Errorf("components: %w", err))
	}
	if err := rungroup.CloseWithin(ctx, a.closed, a.closeConnections); err != nil {
		errs = append(errs, fmt.Errorf("closing connections: %w", err))
	}
	err := errors.Join(errs...)
	if err == nil {
		a.log.Info("control plane stopped")
	} else {
		a.log.Error("control plane stopped with errors", "err", err)
	}
	return err
}

// closeConnections closes the Vault client, the NATS connection, the embedded
// server and the store, in that order, once the components are done with them (or
// Stop ran out of time waiting for them).
func (a *App) closeConnections() {
	if a.vault != nil {
		a.vault.Close()
	}
	if a.nc != nil {
		a.nc.Close()
	}
	if a.natsSrv != nil {
		a.natsSrv.Shutdown()
		a.natsSrv.WaitForShutdown()
	}
	if a.st != nil {
		a.st.Close()
	}
}
