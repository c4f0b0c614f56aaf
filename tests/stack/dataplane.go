package stack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	dpapp "github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
	"github.com/portcullis-gw/portcullis/shared/identity"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// DataPlaneOptions describe one data plane of the stack: in this process (the
// default), or the data plane binary as a child process (Binary), whose memory the
// benchmark measures.
type DataPlaneOptions struct {
	// Name names the data plane in Stack.DataPlane, its logger ("dataplane-<Name>")
	// and its log file.
	Name string
	// Config is its configuration; Region is required. The stack fills in what
	// wires it to the rest when left empty: EgressAllowHosts (the host:port of the
	// stack's upstreams, unless DevAllowAnyEgress), Listen and MetricsListen (random
	// loopback ports; MetricsListen "off" turns the metrics listener off), NATSURL,
	// NATSCreds (new credentials of the region's data-plane role),
	// JWTIssuer, JWTAudience, JWKSURL, PolicyPublicKeys, WorkerID (Name), and Vault (the stack's dev
	// Vault, if it runs one).
	Config dpapp.Config
	// Binary, when set, runs this data plane as a child process of that binary. It
	// gets Env plus the wiring above as PORTCULLIS_* variables (Config's other
	// fields are not passed on), and writes its output to <LogDir>/<Name>.log.
	Binary string
	Env    []string
}

// DataPlane is a running data plane.
type DataPlane struct {
	Name string
	// URL is its base URL, http://host:port.
	URL string
	// MetricsURL is the base URL of its metrics listener (/metrics, and
	// /debug/pprof/ with pprof on), http://host:port; "" when it is off.
	MetricsURL string
	// App is the in-process data plane, nil for a child process.
	App *dpapp.App

	proc *process
}

// Addr is the data plane's host:port.
func (d *DataPlane) Addr() string { return strings.TrimPrefix(d.URL, "http://") }

// baseURL is http://addr, "" when addr is.
func baseURL(addr string) string {
	if addr == "" {
		return ""
	}
	return "http://" + addr
}

// PeakRSS is the peak resident set size, in KiB, of a data plane that runs as a
// child process; it must be called while it runs.
func (d *DataPlane) PeakRSS() (int64, error) {
	if d.proc == nil {
		return 0, errors.New("the data plane runs in this process: no RSS of its own")
	}
	return d.proc.PeakRSS()
}

// RSS is the resident set size now, in KiB, of a data plane that runs as a child
// process.
func (d *DataPlane) RSS() (int64, error) {
	if d.proc == nil {
		return 0, errors.New("the data plane runs in this process: no RSS of its own")
	}
	return d.proc.RSS()
}

// MemoryKiB is a KiB field of the /proc status of a data plane that runs as a child
// process: RssAnon (its heap, stacks and other private memory) or RssFile (the
// pages of its binary and other files it maps), for instance.
func (d *DataPlane) MemoryKiB(field string) (int64, error) {
	if d.proc == nil {
		return 0, errors.New("the data plane runs in this process: no RSS of its own")
	}
	return d.proc.status(field)
}

// startDataPlane starts o's data plane; with Options.WaitReady it waits until its
// /readyz answers 200.
func (s *Stack) startDataPlane(ctx context.Context, o DataPlaneOptions) (*DataPlane, error) {
	cfg := o.Config
	if cfg.NATSURL == "" {
		cfg.NATSURL = s.NATSURL
	}
	if cfg.NATSCreds == "" {
		creds, err := s.NATSCreds(natsauth.DataPlane(cfg.Region))
		if err != nil {
			return nil, fmt.Errorf("data plane %s: %w", o.Name, err)
		}
		cfg.NATSCreds = creds
	}
	if cfg.JWTIssuer == "" {
		cfg.JWTIssuer = s.IssuerURL
	}
	if cfg.JWKSURL == "" {
		cfg.JWKSURL = s.JWKSURL
	}
	if cfg.PolicyPublicKeys == "" {
		cfg.PolicyPublicKeys = s.PolicyPublicKeys
	}
	if cfg.JWTAudience == "" {
		cfg.JWTAudience = identity.DefaultAudience
	}
	if cfg.WorkerID == "" {
		cfg.WorkerID = o.Name
	}
	if cfg.Vault.Addr == "" && s.VaultAddr != "" {
		cfg.Vault = vaultclient.Config{Addr: s.VaultAddr, Auth: vaultclient.AuthToken, TokenFile: s.VaultTokenFile}
	}
	if cfg.EgressAllowHosts == "" && !cfg.DevAllowAnyEgress {
		cfg.EgressAllowHosts = s.upstreamHosts()
	}
	if o.Binary != "" {
		return s.startDataPlaneProcess(ctx, o, cfg)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.MetricsListen == "" {
		cfg.MetricsListen = "127.0.0.1:0"
	}
	app, err := dpapp.Start(ctx, cfg, s.logger("dataplane-"+o.Name))
	if err != nil {
		return nil, fmt.Errorf("start data plane %s: %w", o.Name, err)
	}
	d := &DataPlane{Name: o.Name, URL: "http://" + app.Addr(), MetricsURL: baseURL(app.MetricsAddr()), App: app}
	if s.opts.WaitReady {
		if err := waitHTTP(ctx, d.URL+"/readyz", http.StatusOK, s.readyTimeout, nil); err != nil {
			stopCtx, cancel := s.failedStartStop(ctx)
			_ = s.stopInProcess(stopCtx, "data plane "+o.Name, app.Stop)
			cancel()
			return nil, fmt.Errorf("data plane %s: %w", o.Name, err)
		}
	}
	return d, nil
}

// startDataPlaneProcess runs o.Binary with cfg's wiring in its environment.
func (s *Stack) startDataPlaneProcess(ctx context.Context, o DataPlaneOptions, cfg dpapp.Config) (*DataPlane, error) {
	if cfg.Listen == "" || strings.HasSuffix(cfg.Listen, ":0") {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		cfg.Listen = addr
	}
	if cfg.MetricsListen == "" || strings.HasSuffix(cfg.MetricsListen, ":0") {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		cfg.MetricsListen = addr
	}
	env := append([]string(nil), o.Env...)
	for k, v := range map[string]string{
		"PORTCULLIS_REGION":             cfg.Region,
		"PORTCULLIS_LISTEN":             cfg.Listen,
		"PORTCULLIS_METRICS_LISTEN":     cfg.MetricsListen,
		"PORTCULLIS_WORKER_ID":          cfg.WorkerID,
		"PORTCULLIS_NATS_URL":           cfg.NATSURL,
		"PORTCULLIS_NATS_CREDS":         cfg.NATSCreds,
		"PORTCULLIS_JWT_ISSUER":         cfg.JWTIssuer,
		"PORTCULLIS_JWT_AUDIENCE":       cfg.JWTAudience,
		"PORTCULLIS_JWKS_URL":           cfg.JWKSURL,
		"PORTCULLIS_POLICY_PUBLIC_KEYS": cfg.PolicyPublicKeys,
	} {
		env = append(env, k+"="+v)
	}
	if cfg.EgressAllowHosts != "" {
		env = append(env, "PORTCULLIS_EGRESS_ALLOW_HOSTS="+cfg.EgressAllowHosts)
	}
	if cfg.Vault.Addr != "" {
		env = append(env, "PORTCULLIS_VAULT_ADDR="+cfg.Vault.Addr, "PORTCULLIS_VAULT_AUTH="+string(cfg.Vault.Auth),
			"PORTCULLIS_VAULT_TOKEN_FILE="+cfg.Vault.TokenFile)
	}
	p, err := startProcess("data plane "+o.Name, filepath.Join(s.logDir, o.Name+".log"), env, o.Binary)
	if err != nil {
		return nil, err
	}
	d := &DataPlane{Name: o.Name, URL: "http://" + cfg.Listen, proc: p}
	if cfg.MetricsListen != httpmetrics.ListenOff {
		d.MetricsURL = "http://" + cfg.MetricsListen
	}
	s.track("data plane "+o.Name, p.Exited(), p.Err)
	if s.opts.WaitReady {
		if err := waitHTTP(ctx, d.URL+"/readyz", http.StatusOK, s.readyTimeout, p.Exited()); err != nil {
			stopCtx, cancel := s.failedStartStop(ctx)
			_ = p.stop(stopCtx)
			cancel()
			return nil, fmt.Errorf("data plane %s: %w\n--- %s (tail) ---\n%s", o.Name, err, p.logPath, p.Tail(30))
		}
	}
	return d, nil
}

// upstreamHosts is the egress allowlist of the stack's upstreams: their host:port,
// comma-separated ("" without upstreams).
func (s *Stack) upstreamHosts() string {
	var hosts []string
	for _, u := range s.upstreams {
		hosts = append(hosts, strings.TrimPrefix(u.URL, "http://"))
	}
	return strings.Join(hosts, ",")
}

// stop stops the data plane within ctx.
func (s *Stack) stopDataPlane(ctx context.Context, d *DataPlane) error {
	if d.proc != nil {
		return d.proc.stop(ctx)
	}
	return s.stopInProcess(ctx, "data plane "+d.Name, d.App.Stop)
}
