// Package stack starts and stops a whole Portcullis stack: the control plane (on a
// PostgreSQL database, with its embedded nats-server and dev JWT issuer), or only a
// nats-server when there is no control plane; any number of data planes, in this
// process or as child processes; mock upstreams, in this process or as the
// mockupstream command; and, optionally, a throwaway dev Vault. FindPostgres finds
// the dev stack's database, or runs a cluster of its own.
//
// It is the one definition of the stack: make run (tests/cmd/portcullis-dev), the
// end-to-end tests (tests/e2e) and the benchmark (tests/bench) all build theirs with
// it. Every component is stopped by Stack.Stop, in order and within its deadline:
// first the data planes and the upstreams, then the control plane, the nats-server and
// the Vault; child processes that outlive the deadline are killed with their process
// groups, and die with the stack's process in any case (Pdeathsig).
//
// It talks only to loopback, and never logs or prints a token or a key.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/admintest"
	cpapp "github.com/portcullis-gw/portcullis/controlplane/app"
	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsembed"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// DefaultReadyTimeout bounds each readiness wait unless Options.ReadyTimeout says
// otherwise.
const DefaultReadyTimeout = 60 * time.Second

// Options say what a stack runs. The components start in this order: the dev Vault,
// the control plane (or the nats-server), AfterControlPlane, the upstreams,
// BeforeDataPlanes, the data planes.
type Options struct {
	// LogDir receives the logs of the child processes (<name>.log). Required when
	// any component runs as one.
	LogDir string
	// Logger returns the logger of an in-process component ("controlplane",
	// "dataplane-<name>"); nil discards their logs.
	Logger func(component string) *slog.Logger
	// ReadyTimeout bounds each readiness wait; 0 is DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// StopTimeout bounds the stop of what Start started when a later component fails
	// to start; 0 is 15 seconds.
	StopTimeout time.Duration
	// WaitReady makes Start wait until each data plane's /readyz answers 200, which
	// needs a policy: publish or seed it in AfterControlPlane or BeforeDataPlanes.
	WaitReady bool

	// Vault, when set, runs a dev Vault. The control plane and the data planes
	// whose Vault address is empty use it, logged in with its root token's file.
	Vault *VaultOptions
	// ControlPlane, when set, runs a control plane with this configuration. Its
	// DataDir and DatabaseURL are required; an empty Listen and MetricsListen, and
	// an empty EmbeddedNATSListen when NATSURL is empty, are random loopback ports.
	ControlPlane *cpapp.Config
	// NATS, when there is no control plane, runs a nats-server with JetStream. It
	// trusts an operator of the stack's own (in a directory under LogDir), so every
	// client needs credentials: Stack.NATSCreds issues them.
	NATS natsembed.Options
	// NATSAuth is the operator the nats-server trusts when the control plane uses
	// one at a NATSURL the stack does not run; the stack issues the data planes'
	// credentials with it. With the control plane's embedded nats-server, the
	// control plane issues them.
	NATSAuth *natsauth.Authority
	// AdminName is the service account, with the admin role, whose API token is
	// Stack.AdminToken: "stack-admin" when empty. AdminTokenTTL is that token's
	// lifetime: a day when zero.
	AdminName     string
	AdminTokenTTL time.Duration
	// Issuer is the JWT issuer of the data planes when there is no control plane
	// (whose dev issuer they use otherwise).
	Issuer Issuer
	// PolicyPublicKeys is the data planes' PORTCULLIS_POLICY_PUBLIC_KEYS when there
	// is no control plane (whose policy signing key's public key they get otherwise).
	PolicyPublicKeys string

	Upstreams  []UpstreamOptions
	DataPlanes []DataPlaneOptions

	// AfterControlPlane runs once the control plane (or the nats-server) serves,
	// before the upstreams start: to seed it, for instance.
	AfterControlPlane func(ctx context.Context, s *Stack) error
	// BeforeDataPlanes runs once the upstreams serve, before the data planes start.
	BeforeDataPlanes func(ctx context.Context, s *Stack) error
}

// Issuer names a JWT issuer.
type Issuer struct {
	Name    string // the iss claim
	JWKSURL string // where its public keys are served
}

// Stack is a running stack. Its fields are set by Start; AdminToken may be replaced
// by a hook (make run issues a new one when the data directory's is stale). Its
// methods are safe for concurrent use.
type Stack struct {
	// ControlPlane is the control plane, nil when there is none.
	ControlPlane *cpapp.App
	// AdminURL is the control plane's base URL, http://host:port.
	AdminURL string
	// ControlPlaneMetricsURL is the base URL of the control plane's metrics
	// listener, http://host:port; "" when it is off or there is no control plane.
	ControlPlaneMetricsURL string
	// AdminToken is an API token of the service account "stack-admin", which has the
	// admin role; "" when the bootstrap token was refused (make run's hook then
	// issues one).
	AdminToken string
	// BootstrapToken is the control plane's token from <DataDir>/admin-token: the
	// bootstrap token, which may only manage principals, or a break-glass one.
	BootstrapToken string
	// NATSURL is the nats-server's client URL.
	NATSURL string
	// IssuerURL and JWKSURL are the data planes' JWT issuer.
	IssuerURL, JWKSURL string
	// PolicyPublicKeys is the data planes' PORTCULLIS_POLICY_PUBLIC_KEYS: the public
	// key file of the control plane's policy signing key.
	PolicyPublicKeys string
	// VaultAddr and VaultTokenFile are the dev Vault's, when it runs.
	VaultAddr, VaultTokenFile string

	opts         Options
	logDir       string
	readyTimeout time.Duration

	nats       *server.Server
	natsAuth   *natsauth.Authority // issues credentials, unless the control plane's embedded nats-server does
	cpConn     *nats.Conn          // without a control plane: the connection that creates audit streams
	vault      *vaulttest.Launcher
	upstreams  []*Upstream
	dataPlanes []*DataPlane

	exited   chan string // names of tracked child processes, as each ends
	stopOnce sync.Once
	stopErr  error
}

// failedStartStop is the context that bounds stopping what a failed Start started:
// Options.StopTimeout (15 s by default), even when Start's own context has no
// deadline or has ended, so that a child that ignores SIGTERM is still killed.
func (s *Stack) failedStartStop(ctx context.Context) (context.Context, context.CancelFunc) {
	timeout := s.opts.StopTimeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}

// Start starts the stack o describes and returns it once every component serves.
// When a component fails to start, Start stops those it started and returns why.
func Start(ctx context.Context, o Options) (_ *Stack, err error) {
	s := &Stack{opts: o, logDir: o.LogDir, readyTimeout: o.ReadyTimeout, exited: make(chan string, 16)}
	if s.readyTimeout <= 0 {
		s.readyTimeout = DefaultReadyTimeout
	}
	if s.logDir == "" {
		s.logDir = os.TempDir()
	}
	defer func() {
		if err != nil {
			stopCtx, cancel := s.failedStartStop(ctx)
			defer cancel()
			_ = s.Stop(stopCtx)
		}
	}()

	if o.Vault != nil {
		if s.vault, err = s.startVault(ctx, *o.Vault); err != nil {
			return nil, err
		}
		s.VaultAddr, s.VaultTokenFile = s.vault.Addr, s.vault.TokenFile
	}
	if o.ControlPlane != nil {
		if err := s.startControlPlane(ctx, *o.ControlPlane); err != nil {
			return nil, err
		}
	} else {
		dir, err := os.MkdirTemp(s.logDir, "nats-auth-")
		if err != nil {
			return nil, fmt.Errorf("nats-server credentials: %w", err)
		}
		if s.natsAuth, err = natsauth.LoadOrCreate(dir); err != nil {
			return nil, err
		}
		no := o.NATS
		no.Configure = s.natsAuth.Configure
		ns, err := natsembed.Start(no)
		if err != nil {
			return nil, fmt.Errorf("start nats-server: %w", err)
		}
		s.nats = ns
		s.NATSURL = ns.ClientURL()
		if err := s.serveAuditStreams(); err != nil {
			return nil, err
		}
		s.IssuerURL, s.JWKSURL = o.Issuer.Name, o.Issuer.JWKSURL
		s.PolicyPublicKeys = o.PolicyPublicKeys
	}
	if o.AfterControlPlane != nil {
		if err := o.AfterControlPlane(ctx, s); err != nil {
			return nil, err
		}
	}
	for _, uo := range o.Upstreams {
		u, err := s.startUpstream(ctx, uo)
		if err != nil {
			return nil, err
		}
		s.upstreams = append(s.upstreams, u)
	}
	if o.BeforeDataPlanes != nil {
		if err := o.BeforeDataPlanes(ctx, s); err != nil {
			return nil, err
		}
	}
	for _, do := range o.DataPlanes {
		d, err := s.startDataPlane(ctx, do)
		if err != nil {
			return nil, err
		}
		s.dataPlanes = append(s.dataPlanes, d)
	}
	return s, nil
}

// startControlPlane starts the control plane and reads its admin token.
func (s *Stack) startControlPlane(ctx context.Context, cfg cpapp.Config) error {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.MetricsListen == "" {
		cfg.MetricsListen = "127.0.0.1:0"
	}
	if cfg.NATSURL == "" && cfg.EmbeddedNATSListen == "" {
		cfg.EmbeddedNATSListen = "127.0.0.1:0"
	}
	if cfg.Vault.Addr == "" && s.VaultAddr != "" {
		cfg.Vault = vaultclient.Config{Addr: s.VaultAddr, Auth: vaultclient.AuthToken, TokenFile: s.VaultTokenFile}
	}
	s.natsAuth = s.opts.NATSAuth
	cp, err := cpapp.Start(ctx, cfg, s.logger("controlplane"))
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	s.ControlPlane = cp
	s.AdminURL = "http://" + cp.Addr()
	s.ControlPlaneMetricsURL = baseURL(cp.MetricsAddr())
	s.NATSURL = cp.NATSURL()
	s.IssuerURL, s.JWKSURL = s.AdminURL, s.AdminURL+"/.well-known/jwks.json"
	s.PolicyPublicKeys = cp.PolicyPublicKeyFile()
	token, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read admin token: %w", err)
	}
	s.BootstrapToken = strings.TrimSpace(string(token))
	if s.BootstrapToken == "" {
		return nil
	}
	s.AdminToken, err = s.NewAdminToken(ctx, s.BootstrapToken)
	if errors.Is(err, admintest.ErrTokenRefused) {
		s.AdminToken = "" // a stale token file: the caller issues a new one
		return nil
	}
	if err != nil {
		return fmt.Errorf("make the stack's administrator: %w", err)
	}
	return nil
}

// NewAdminToken issues, with token (the bootstrap or break-glass token), a new API
// token of the stack's administrator (Options.AdminName), making it if need be.
func (s *Stack) NewAdminToken(ctx context.Context, token string) (string, error) {
	name, ttl := s.opts.AdminName, s.opts.AdminTokenTTL
	if name == "" {
		name = "stack-admin"
	}
	if ttl == 0 {
		ttl = 24 * time.Hour
	}
	return admintest.ServiceToken(ctx, s.AdminURL, token, name, []string{"admin"}, ttl)
}

// serveAuditStreams does, when there is no control plane, what a control plane
// does for the data planes: create the audit stream of their region when they ask
// (they may not create streams themselves).
func (s *Stack) serveAuditStreams() error {
	creds, err := s.natsAuth.WriteCreds(natsauth.ControlPlane())
	if err != nil {
		return err
	}
	nc, err := nats.Connect(s.NATSURL, nats.UserCredentials(creds), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect to the nats-server: %w", err)
	}
	s.cpConn = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = audit.ServeStreamCreate(nc, js, 30*time.Second)
	return err
}

// NATSCreds writes new NATS credentials of role r for the stack's nats-server and
// returns the file's path.
func (s *Stack) NATSCreds(r natsauth.Role) (string, error) {
	if s.natsAuth != nil {
		return s.natsAuth.WriteCreds(r)
	}
	if s.ControlPlane != nil {
		return s.ControlPlane.NATSCreds(r)
	}
	return "", errors.New("stack: no NATS operator to issue credentials (Options.NATSAuth)")
}

// Upstream is the upstream named name, nil when there is none.
func (s *Stack) Upstream(name string) *Upstream {
	for _, u := range s.upstreams {
		if u.Name == name {
			return u
		}
	}
	return nil
}

// DataPlane is the data plane named name, nil when there is none.
func (s *Stack) DataPlane(name string) *DataPlane {
	for _, d := range s.dataPlanes {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// DataPlanes are the data planes, in start order.
func (s *Stack) DataPlanes() []*DataPlane { return append([]*DataPlane(nil), s.dataPlanes...) }

// Exited receives the name of each child process of the stack as it ends, and how,
// whether Stop ended it or not: make run stops when one ends on its own.
func (s *Stack) Exited() <-chan string { return s.exited }

// track reports name on s.exited when exited is closed.
func (s *Stack) track(name string, exited <-chan struct{}, why func() error) {
	go func() {
		<-exited
		select {
		case s.exited <- fmt.Sprintf("%s (%v)", name, why()):
		default: // nobody is listening for more than a few
		}
	}()
}

// Stop stops every component within ctx: first the data planes and the upstreams,
// within half of the time left, then the control plane, the nats-server and the dev
// Vault. A component that does not stop in time is left behind, a child process
// killed. Stop returns every error; later calls return the first call's.
func (s *Stack) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.stop(ctx) })
	return s.stopErr
}

func (s *Stack) stop(ctx context.Context) error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	add := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	first := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		first, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(deadline)/2))
		defer cancel()
	}
	for _, d := range s.dataPlanes {
		wg.Go(func() { add(s.stopDataPlane(first, d)) })
	}
	for _, u := range s.upstreams {
		wg.Go(func() { add(u.stop(first)) })
	}
	wg.Wait()
	if s.ControlPlane != nil {
		wg.Go(func() { add(s.stopInProcess(ctx, "control plane", s.ControlPlane.Stop)) })
	}
	if s.nats != nil {
		wg.Go(func() {
			if s.cpConn != nil {
				s.cpConn.Close()
			}
			s.nats.Shutdown()
			done := make(chan struct{})
			go func() { s.nats.WaitForShutdown(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				add(errors.New("nats-server: shutdown did not finish in time"))
			}
		})
	}
	if s.vault != nil {
		wg.Go(func() { add(s.vault.Stop(ctx)) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stopInProcess calls stop with ctx and waits for it at most until ctx ends, so that
// a component that overruns its deadline cannot hold the stack's stop up.
func (s *Stack) stopInProcess(ctx context.Context, name string, stop func(context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- stop(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("stop %s: %w", name, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop %s: not stopped in time: %w", name, ctx.Err())
	}
}

// logger is the logger of the in-process component name.
func (s *Stack) logger(name string) *slog.Logger {
	if s.opts.Logger != nil {
		return s.opts.Logger(name)
	}
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}
