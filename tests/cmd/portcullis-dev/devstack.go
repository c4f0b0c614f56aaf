package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/portcullis-gw/portcullis/controlplane/devoidc"

	cpapp "github.com/portcullis-gw/portcullis/controlplane/app"
	dpapp "github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/shared/vaulttest"
	teststack "github.com/portcullis-gw/portcullis/tests/stack"
)

// demoClients are the clients of the demo seed that get a token in .data/dev-tokens.
var demoClients = []string{"moltbot-agent-07", "premium-app", "analytics-svc"}

// devStack is one run of the dev stack.
type devStack struct {
	cfg       config
	lookupEnv func(string) (string, bool)
	out       io.Writer // what a user reads: progress and the summary
	errOut    io.Writer

	// vaultURL is the Vault that holds the keys; "" means the file key source.
	vaultURL string
	logFiles []*os.File
	// oidc is the dev OIDC provider people sign in with.
	oidc *devoidc.Provider
}

// say prints one line of progress.
func (d *devStack) say(format string, args ...any) {
	fmt.Fprintf(d.out, "devstack: "+format+"\n", args...)
}

// run starts the stack, waits until it should stop, and stops it.
func (d *devStack) run(ctx context.Context) (err error) {
	cfg := d.cfg
	if err := d.prepareDirs(); err != nil {
		return err
	}
	defer d.closeLogs()
	if err := d.requireFree(); err != nil {
		return err
	}

	pg, err := teststack.FindPostgres(ctx, teststack.PostgresOptions{
		URL:        cfg.DatabaseURL,
		ClusterDir: filepath.Join(cfg.DataDir, "pg"),
		LogFile:    filepath.Join(cfg.logDir(), "postgres.log"),
		Say:        func(s string) { d.say("%s", s) },
	})
	if err != nil {
		return d.cause(ctx, err)
	}
	defer func() {
		if perr := pg.Stop(); perr != nil {
			d.say("%v", perr)
		}
	}()

	var vaultOpts *teststack.VaultOptions
	if vaultOpts, err = d.setupVault(); err != nil {
		return d.cause(ctx, err) // Ctrl-C during the launcher's first build
	}
	if d.vaultURL != "" {
		defer os.Remove(cfg.vaultTokenFile()) // a root token of a Vault that is gone, or a copy
	}
	if err := ensureRandomFile(cfg.keyFile(), func() []byte { return []byte("dev-" + randomHex(24) + "\n") }); err != nil {
		return fmt.Errorf("dev upstream key: %w", err)
	}
	if err := ensureRandomFile(cfg.auditKeyFile(), func() []byte { return []byte(randomHex(32)) }); err != nil {
		return fmt.Errorf("audit key: %w", err)
	}

	if err := d.startOIDC(); err != nil {
		return err
	}
	defer d.oidc.Stop()
	opts, err := d.stackOptions(pg.URL, vaultOpts)
	if err != nil {
		return err
	}
	d.say("starting the control plane on %s", cfg.controlPlaneURL())
	st, err := teststack.Start(ctx, opts)
	if err != nil {
		return d.cause(ctx, err)
	}
	defer func() {
		d.say("stopping...")
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.Stop)
		defer cancel()
		if serr := st.Stop(stopCtx); serr != nil {
			d.say("%v", serr)
		}
		d.say("stopped")
	}()

	admin := newAdminClient(st.AdminURL, st.AdminToken)
	if err := os.MkdirAll(cfg.tokenDir(), 0o700); err != nil {
		return err
	}
	for _, client := range demoClients {
		token, err := admin.mint(ctx, client)
		if err != nil {
			return d.cause(ctx, err)
		}
		if err := writeFileAtomic(filepath.Join(cfg.tokenDir(), client+".jwt"), []byte(token+"\n")); err != nil {
			return fmt.Errorf("write the token of %s: %w", client, err)
		}
	}
	d.printSummary()
	return d.wait(ctx, st)
}

// cause is err, or the signal that stopped the stack when ctx ended.
func (d *devStack) cause(ctx context.Context, err error) error {
	if c := context.Cause(ctx); c != nil {
		return c
	}
	return err
}

// wait waits until a signal, until a child process of the stack ends, or until the
// terminal hangs up. A hangup signals the terminal's session leader only; when that is
// make itself (ssh -t host make run, a terminal window running make run), make waits
// for this command without passing the signal on, so it looks for itself.
func (d *devStack) wait(ctx context.Context, st *teststack.Stack) error {
	tty := -1
	for fd := range 3 {
		if isTerminal(fd) {
			tty = fd
			break
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case what := <-st.Exited():
			return fmt.Errorf("%s exited; its log is in %s", what, d.cfg.logDir())
		case <-tick.C:
			if tty >= 0 && !isTerminal(tty) {
				d.say("the terminal hung up")
				return signalError{syscall.SIGHUP}
			}
		}
	}
}

// isTerminal reports whether fd is a terminal.
func isTerminal(fd int) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

// prepareDirs makes the data directory (mode 0700: admin token, keys and tokens live
// there) and its logs directory.
func (d *devStack) prepareDirs() error {
	for _, dir := range []string{d.cfg.DataDir, d.cfg.logDir(), filepath.Dir(d.cfg.keyFile())} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	return os.Chmod(d.cfg.DataDir, 0o700)
}

// requireFree fails when one of the stack's addresses is taken.
func (d *devStack) requireFree() error {
	cfg := d.cfg
	addrs := []struct{ addr, what string }{
		{cfg.ControlPlaneListen, "control plane"}, {cfg.EUListen, "data plane eu"}, {cfg.USListen, "data plane us"},
		{cfg.MockListen, "mock upstream"}, {cfg.MockControlListen, "mock upstream control API"}, {cfg.NATSListen, "embedded NATS"},
	}
	if cfg.DevVault {
		addrs = append(addrs, struct{ addr, what string }{cfg.DevVaultListen, "dev Vault"})
	}
	addrs = append(addrs, []struct{ addr, what string }{{cfg.ControlPlaneMetricsListen, "control plane metrics"},
		{cfg.EUMetricsListen, "data plane eu metrics"}, {cfg.USMetricsListen, "data plane us metrics"}}...)
	var problems []error
	for _, a := range addrs {
		if a.addr != "" && a.addr != "off" && teststack.Listening(a.addr) {
			problems = append(problems, fmt.Errorf("%s (%s) is already in use; is another dev stack running? "+
				"Override it with the variable named in tests/cmd/portcullis-dev/main.go", a.addr, a.what))
		}
	}
	return errors.Join(problems...)
}

// setupVault finds the Vault that holds the keys (see the package comment) and sets
// d.vaultURL, or leaves it empty for the file key source. With a dev Vault it returns
// the options that start it.
func (d *devStack) setupVault() (*teststack.VaultOptions, error) {
	cfg := d.cfg
	switch {
	case cfg.DevVault:
		if cfg.VaultAddr != "" {
			d.say("PORTCULLIS_DEV_VAULT is set: starting a dev Vault, not using VAULT_ADDR")
		}
		bin := cfg.DevVaultBin
		if bin == "" {
			// The build the tests use, cached by the launcher's sources: minutes the
			// first time, nothing after.
			var err error
			if bin, err = vaulttest.BuildLauncher(func(format string, args ...any) { d.say(format, args...) }); err != nil {
				return nil, fmt.Errorf("the dev Vault launcher: %w; or set PORTCULLIS_DEV_VAULT_BIN to a launcher binary", err)
			}
		} else if info, err := os.Stat(bin); err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("the dev Vault launcher %s is not an executable file (PORTCULLIS_DEV_VAULT_BIN)", bin)
		}
		d.vaultURL = "http://" + cfg.DevVaultListen
		d.say("Vault: a dev Vault in memory on %s (its state ends with make run)", d.vaultURL)
		return &teststack.VaultOptions{Binary: bin, Listen: cfg.DevVaultListen, TokenFile: cfg.vaultTokenFile(), Env: d.childEnv()}, nil
	case cfg.VaultAddr != "" && cfg.VaultToken != "":
		if !isLocalURL(cfg.VaultAddr) && !cfg.VaultAllowRemote {
			d.say("VAULT_ADDR %s is not on this machine, and the demo writes its keys over secret/portcullis/* there: "+
				"not using it (PORTCULLIS_DEV_VAULT_ALLOW_REMOTE=true would)", cfg.VaultAddr)
			break
		}
		d.vaultURL = strings.TrimRight(cfg.VaultAddr, "/")
		if err := writeFileAtomic(cfg.vaultTokenFile(), []byte(cfg.VaultToken+"\n")); err != nil {
			return nil, fmt.Errorf("vault token file: %w", err)
		}
		d.say("Vault: VAULT_ADDR, %s (token copied to %s for the gateway)", d.vaultURL, cfg.vaultTokenFile())
	case cfg.VaultAddr != "":
		d.say("VAULT_ADDR is set but VAULT_TOKEN is not: not using that Vault")
	}
	if d.vaultURL == "" {
		d.say("no Vault (set VAULT_ADDR and VAULT_TOKEN, or PORTCULLIS_DEV_VAULT=1): deployments use the file key source")
	}
	return nil, nil
}

// isLocalURL reports whether the host of u is this machine (loopback).
func isLocalURL(u string) bool {
	host := u
	if _, rest, ok := strings.Cut(host, "://"); ok {
		host = rest
	}
	host, _, _ = strings.Cut(host, "/")
	if _, rest, ok := strings.Cut(host, "@"); ok {
		host = rest
	}
	return host == "localhost" || strings.HasPrefix(host, "localhost:") || strings.HasPrefix(host, "127.") ||
		host == "[::1]" || strings.HasPrefix(host, "[::1]:")
}

// childEnv is the environment of the stack's child processes: this one's, without
// VAULT_TOKEN (the planes read their token from a file, never from the environment).
func (d *devStack) childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_TOKEN=") {
			env = append(env, kv)
		}
	}
	return env
}

// getenv reads the environment with overlay on top; VAULT_TOKEN and
// PORTCULLIS_VAULT_TOKEN read as empty.
func (d *devStack) getenv(overlay map[string]string) func(string) string {
	return func(key string) string {
		if v, ok := overlay[key]; ok {
			return v
		}
		if key == "VAULT_TOKEN" || key == "PORTCULLIS_VAULT_TOKEN" {
			return ""
		}
		v, _ := d.lookupEnv(key)
		return v
	}
}

// vaultEnv are the planes' Vault settings.
func (d *devStack) vaultEnv() map[string]string {
	if d.vaultURL == "" {
		return map[string]string{"PORTCULLIS_VAULT_ADDR": ""}
	}
	return map[string]string{"PORTCULLIS_VAULT_ADDR": d.vaultURL, "PORTCULLIS_VAULT_AUTH": "token",
		"PORTCULLIS_VAULT_TOKEN_FILE": d.cfg.vaultTokenFile()}
}

// stackOptions are the dev stack's: the planes' configurations read from the
// environment, as their binaries read it, with the dev stack's settings on top.
func (d *devStack) stackOptions(databaseURL string, vault *teststack.VaultOptions) (teststack.Options, error) {
	cfg := d.cfg
	cpEnv := map[string]string{
		"PORTCULLIS_DATABASE_URL":         databaseURL,
		"PORTCULLIS_LISTEN":               cfg.ControlPlaneListen,
		"PORTCULLIS_METRICS_LISTEN":       cfg.ControlPlaneMetricsListen,
		"PORTCULLIS_NATS_URL":             "",
		"PORTCULLIS_EMBEDDED_NATS_LISTEN": cfg.NATSListen,
		"PORTCULLIS_DATA_DIR":             cfg.DataDir,
		"PORTCULLIS_DEV_ISSUER":           "true",
		"PORTCULLIS_ISSUER_URL":           cfg.controlPlaneURL(),
		// key_source file only under the dev key directory (the demo's key file).
		"PORTCULLIS_KEY_DIR": cfg.keyDir(),
	}
	for k, v := range d.vaultEnv() {
		cpEnv[k] = v
	}
	// People sign in with the dev OIDC provider; its demo groups map to roles.
	cpEnv["PORTCULLIS_OIDC_ISSUER"] = d.oidc.Issuer()
	cpEnv["PORTCULLIS_OIDC_CLIENT_ID"] = d.oidc.ClientID()
	cpEnv["PORTCULLIS_OIDC_CLIENT_SECRET_FILE"] = cfg.oidcSecretFile()
	cpEnv["PORTCULLIS_OIDC_ROLE_MAP"] = devoidc.RoleMap
	// The mock serves the OpenAI admin API subset the openai_admin minter uses, on its
	// main port: the rotator sends the admin key there and nowhere else.
	cpEnv["PORTCULLIS_OPENAI_ADMIN_URL"] = "http://" + cfg.MockListen
	var cfgErr strings.Builder
	cpCfg, _, err := cpapp.LoadConfig([]string{}, d.getenv(cpEnv), &cfgErr)
	if err != nil {
		return teststack.Options{}, fmt.Errorf("control plane configuration: %w", err)
	}
	// The policy signing key, made now (the control plane keeps using it) so that the
	// data planes' configuration can name its public key.
	policyKey := filepath.Join(cfg.DataDir, "policy-signing-key.pem")
	if cpCfg.PolicySigningKeyFile != "" {
		policyKey = cpCfg.PolicySigningKeyFile
	}
	if _, _, err := signing.LoadOrCreate(policyKey); err != nil {
		return teststack.Options{}, fmt.Errorf("policy signing key: %w", err)
	}
	levels := map[string]string{"controlplane": cpCfg.LogLevel}
	opts := teststack.Options{
		AdminName:     "dev-admin",
		AdminTokenTTL: 30 * 24 * time.Hour,
		LogDir:        cfg.logDir(),
		ReadyTimeout:  cfg.Wait,
		StopTimeout:   cfg.Stop,
		WaitReady:     true,
		Vault:         vault,
		ControlPlane:  &cpCfg,
		Upstreams:     []teststack.UpstreamOptions{d.mockOptions()},
		AfterControlPlane: func(ctx context.Context, s *teststack.Stack) error {
			return d.seed(ctx, s, databaseURL)
		},
		BeforeDataPlanes: d.mintOpenAIKeys,
	}
	for _, dp := range []struct{ region, listen, metrics string }{{"eu", cfg.EUListen, cfg.EUMetricsListen}, {"us", cfg.USListen, cfg.USMetricsListen}} {
		dpEnv := map[string]string{
			"PORTCULLIS_REGION":                 dp.region,
			"PORTCULLIS_LISTEN":                 dp.listen,
			"PORTCULLIS_METRICS_LISTEN":         dp.metrics,
			"PORTCULLIS_WORKER_ID":              dp.region + "-1",
			"PORTCULLIS_NATS_URL":               "nats://" + cfg.NATSListen,
			"PORTCULLIS_JWT_ISSUER":             cfg.controlPlaneURL(),
			"PORTCULLIS_JWKS_URL":               cfg.controlPlaneURL() + "/.well-known/jwks.json",
			"PORTCULLIS_EXPOSE_ROUTING_HEADERS": "true",
			"PORTCULLIS_AUDIT_SPOOL_DIR":        filepath.Join(cfg.DataDir, "audit-spool", dp.region),
			"PORTCULLIS_AUDIT_SINK":             filepath.Join(cfg.logDir(), "audit-"+dp.region+".jsonl"),
			"PORTCULLIS_AUDIT_KEY_FILE":         cfg.auditKeyFile(),
			// The only upstream is the mock: the workers call nothing else.
			"PORTCULLIS_EGRESS_ALLOW_HOSTS": cfg.MockListen,
			"PORTCULLIS_KEY_DIR":            cfg.keyDir(),
			"PORTCULLIS_POLICY_PUBLIC_KEYS": signing.PublicPath(policyKey),
		}
		for k, v := range d.vaultEnv() {
			dpEnv[k] = v
		}
		dpCfg, err := dpapp.LoadConfig([]string{}, d.getenv(dpEnv), &cfgErr)
		if err != nil {
			return teststack.Options{}, fmt.Errorf("data plane %s configuration: %w", dp.region, err)
		}
		levels["dataplane-"+dp.region] = dpCfg.LogLevel
		opts.DataPlanes = append(opts.DataPlanes, teststack.DataPlaneOptions{Name: dp.region, Config: dpCfg})
	}
	opts.Logger = func(component string) *slog.Logger {
		f, err := os.OpenFile(filepath.Join(cfg.logDir(), component+".log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			d.say("cannot open the log of %s (%v): it goes to stderr", component, err)
			return logging.New(d.errOut, levels[component])
		}
		d.logFiles = append(d.logFiles, f)
		return logging.New(f, levels[component])
	}
	return opts, nil
}

// mockOptions run bin/mockupstream, with its control API, and with a Vault its key
// files, which the seed writes first.
func (d *devStack) mockOptions() teststack.UpstreamOptions {
	cfg := d.cfg
	argv := []string{cfg.bin("mockupstream"), "--listen", cfg.MockListen, "--control-listen", cfg.MockControlListen}
	if d.vaultURL != "" {
		argv = append(argv, "--accept-keys-file", cfg.acceptKeysFile(), "--admin-key-file", cfg.adminKeyFile())
	}
	o := teststack.UpstreamOptions{
		Name:    "mockupstream",
		Listen:  cfg.MockListen,
		Command: argv,
		Env:     append(d.childEnv(), "PORTCULLIS_MOCK_LISTEN="+cfg.MockListen, "PORTCULLIS_MOCK_CONTROL_LISTEN="+cfg.MockControlListen),
	}
	if cfg.MockControlListen != "" {
		o.ReadyURLs = []string{"http://" + cfg.MockControlListen + "/mock/fail"}
	}
	return o
}

// seed makes sure the admin token works, then applies the demo tenant,
// deploy/demo/gateway.yaml, with "portcullis apply": deployment NAME at the mock's
// base URL <mock>/d/NAME so that the mock can tell the deployments apart, and
// residency rules eu and us at the eu and us data planes' URLs. With a Vault it then
// moves the keys there (seedVault), and writes the mock's key files, before the mock
// starts.
func (d *devStack) seed(ctx context.Context, s *teststack.Stack, databaseURL string) error {
	cfg := d.cfg
	if s.AdminToken == "" || !newAdminClient(s.AdminURL, s.AdminToken).works(ctx) {
		// The database already had admin tokens whose file is not here, or the file
		// here is stale (say, another checkout shares the same Postgres): issue a
		// break-glass token and make the dev administrator with it.
		d.say("%s/admin-token is missing or not accepted by this database; issuing a break-glass admin token", cfg.DataDir)
		if err := d.runTool(ctx, "admin-token-reset", []string{"PORTCULLIS_DATABASE_URL=" + databaseURL, "PORTCULLIS_DATA_DIR=" + cfg.DataDir},
			cfg.bin("controlplane"), "admin-token", "reset"); err != nil {
			return err
		}
		token, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin-token"))
		if err != nil {
			return fmt.Errorf("read the new admin token: %w", err)
		}
		s.BootstrapToken = strings.TrimSpace(string(token))
		if s.AdminToken, err = s.NewAdminToken(ctx, s.BootstrapToken); err != nil {
			return fmt.Errorf("make the dev administrator: %w", err)
		}
	}
	if err := writeFileAtomic(cfg.devAdminTokenFile(), []byte(s.AdminToken+"\n")); err != nil {
		return fmt.Errorf("write the dev administrator's token: %w", err)
	}
	d.say("applying the demo tenant: deploy/demo/gateway.yaml")
	mockURL := "http://" + cfg.MockListen
	demo, err := renderDemo(filepath.Join(cfg.Root, "deploy", "demo", "gateway.yaml"), map[string]string{
		"DEMO_UPSTREAM_URL": mockURL, "DEMO_KEY_FILE": cfg.keyFile(),
		"DEMO_EU_ENDPOINT_URL": dataPlaneURL(cfg.EUListen), "DEMO_US_ENDPOINT_URL": dataPlaneURL(cfg.USListen),
	})
	if err != nil {
		return err
	}
	rendered := filepath.Join(cfg.DataDir, "demo-gateway.yaml")
	if err := writeFileAtomic(rendered, demo); err != nil {
		return err
	}
	if err := d.runTool(ctx, "seed", []string{"PORTCULLIS_ADMIN_URL=" + s.AdminURL, "PORTCULLIS_DATA_DIR=" + cfg.DataDir,
		"PORTCULLIS_ADMIN_TOKEN=" + s.AdminToken},
		cfg.bin("portcullis"), "apply", "-f", rendered); err != nil {
		return err
	}
	if d.vaultURL == "" {
		return nil
	}
	log, err := os.OpenFile(filepath.Join(cfg.logDir(), "seed.log"), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	err = seedVault(ctx, newAdminClient(s.AdminURL, s.AdminToken), vaultSeed{
		addr: d.vaultURL, tokenFile: cfg.vaultTokenFile(), upstreamURL: mockURL,
		acceptKeysFile: cfg.acceptKeysFile(), adminKeyFile: cfg.adminKeyFile(), report: log,
	})
	if err != nil {
		return fmt.Errorf("seed the demo's keys in Vault: %w", err)
	}
	return nil
}

// demoValue is a ${NAME} of the demo gateway.yaml.
var demoValue = regexp.MustCompile(`\$\{[A-Z0-9_]+\}`)

// renderDemo is the demo gateway.yaml at path with its ${NAME} values filled in; a
// ${...} it does not know is an error, so that none reaches the control plane.
func renderDemo(path string, values map[string]string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the demo configuration: %w", err)
	}
	var missing []string
	out := demoValue.ReplaceAllStringFunc(string(raw), func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := values[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: no value for %s", path, strings.Join(missing, ", "))
	}
	return []byte(out), nil
}

// mintOpenAIKeys, with a Vault, has the mock's admin API mint the openai deployments'
// keys (portcullis secrets rotate): they are its service accounts, so that a rotation
// or revocation deletes the old one there. Each run mints new ones.
func (d *devStack) mintOpenAIKeys(ctx context.Context, s *teststack.Stack) error {
	if d.vaultURL == "" {
		return nil
	}
	d.say("minting the openai deployments' keys with the mock's admin API (portcullis secrets rotate)")
	_, err := newAdminClient(s.AdminURL, s.AdminToken).call(ctx, http.MethodPost, "/secrets/rotate",
		map[string]string{"provider": "openai", "reason": "make run: keys minted by the mock upstream's admin API"}, nil)
	if err != nil {
		return fmt.Errorf("secrets rotate --provider openai: %w", err)
	}
	return nil
}

// runTool runs one of make build's binaries to its end, with env added to the
// environment and its output in <logs>/<name>.log.
func (d *devStack) runTool(ctx context.Context, name string, env []string, argv ...string) error {
	logPath := filepath.Join(d.cfg.logDir(), name+".log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(d.childEnv(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w (is bin/ built? make run builds it)\n--- %s (tail) ---\n%s",
			filepath.Base(argv[0]), strings.Join(argv[1:3], " "), err, logPath, teststack.Tail(logPath, 30))
	}
	return nil
}

// closeLogs closes the in-process components' log files.
func (d *devStack) closeLogs() {
	for _, f := range d.logFiles {
		f.Close()
	}
}

// startOIDC starts the dev OIDC provider with the demo people, who share one
// password made at the first run, and writes its client secret for the control
// plane.
func (d *devStack) startOIDC() error {
	cfg := d.cfg
	if err := ensureRandomFile(cfg.oidcPasswordFile(), func() []byte { return []byte(randomHex(8) + "\n") }); err != nil {
		return fmt.Errorf("dev OIDC password: %w", err)
	}
	raw, err := os.ReadFile(cfg.oidcPasswordFile())
	if err != nil {
		return err
	}
	p, err := devoidc.Start(cfg.OIDCListen, devoidc.DemoPeople(strings.TrimSpace(string(raw))), cfg.controlPlaneURL()+"/auth/callback")
	if err != nil {
		return fmt.Errorf("dev OIDC provider: %w", err)
	}
	if err := writeFileAtomic(cfg.oidcSecretFile(), []byte(p.ClientSecret()+"\n")); err != nil {
		_ = p.Stop()
		return fmt.Errorf("dev OIDC client secret: %w", err)
	}
	d.oidc = p
	d.say("dev OIDC provider at %s", p.Issuer())
	return nil
}

// ensureRandomFile writes content() to path (mode 0600) unless it holds something.
func ensureRandomFile(path string, content func() []byte) error {
	if info, err := os.Stat(path); err == nil && info.Size() > 0 {
		return os.Chmod(path, 0o600)
	}
	return writeFileAtomic(path, content())
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error
	return hex.EncodeToString(b)
}

// metricsURL is where the metrics listener on addr serves /metrics, or says it is
// off.
func metricsURL(addr string) string {
	if addr == "off" {
		return "off (its metrics listener)"
	}
	return "http://" + addr + "/metrics"
}

// printSummary prints what runs where, and what to try.
func (d *devStack) printSummary() {
	cfg := d.cfg
	tokens := cfg.tokenDir()
	var controlLine, failExample, keysLine, keysExample, cliEnv string
	if cfg.MockControlListen != "" {
		controlLine = fmt.Sprintf("  mock control    http://%s/mock/fail   (no auth: keep it on loopback)\n", cfg.MockControlListen)
		failExample = fmt.Sprintf(`
Make openai-eu answer 500 for a minute, then send that again a few times and watch the
X-Portcullis-Fallback header (curl -i) and %s (see README.md):

curl -s -XPOST http://%s/mock/fail -d '{"deployment":"openai-eu","mode":"5xx","for_seconds":60}'
`, metricsURL(cfg.EUMetricsListen), cfg.MockControlListen)
	}
	if cfg.controlPlaneURL() != "http://127.0.0.1:8080" || cfg.DataDir != filepath.Join(cfg.Root, ".data") {
		cliEnv = fmt.Sprintf("export PORTCULLIS_ADMIN_URL=%s PORTCULLIS_DATA_DIR=%s\n", cfg.controlPlaneURL(), cfg.DataDir)
	}
	cliEnv += fmt.Sprintf("export PORTCULLIS_ADMIN_TOKEN=$(cat %s)\n", cfg.devAdminTokenFile())
	if d.vaultURL != "" {
		keysLine = fmt.Sprintf("  Vault           %s   (keys at secret/portcullis/<deployment>, token in %s)", d.vaultURL, cfg.vaultTokenFile())
		keysExample = fmt.Sprintf(`
Rotate openai-eu's key while requests flow: the mock's admin API mints the new key and
the old one stays valid for 3 minutes. Or revoke every openai key at once: new ones are
minted and the mock refuses the old ones (see README.md):

%sbin/portcullis secrets rotate --provider openai --deployment openai-eu
bin/portcullis secrets revoke --provider openai --reason "key_suspected_compromise"
bin/portcullis secrets status
`, cliEnv)
	} else {
		keysLine = fmt.Sprintf("  upstream key    %s   (key_source file; PORTCULLIS_DEV_VAULT=1 puts the keys in a dev Vault)", cfg.keyFile())
	}
	fmt.Fprintf(d.out, `
Portcullis dev stack is up (logs in %s, Ctrl-C stops everything).

  control plane   %s   (admin API %s/admin/v1, dev-admin's API token in %s)
  console         %s   sign in as admin@, auditor@ or tenant-admin@demo.example,
                  password in %s (or bin/portcullis login)
  data plane eu   http://%s
  data plane us   http://%s
  metrics         %s (control plane)
                  %s (data plane eu)
                  %s (data plane us)
  mock upstream   http://%s   (deployment NAME at http://%s/d/NAME)
%s  embedded NATS   nats://%s   (credentials required: read-only ops ones in %s)
%s
  tokens          %s/moltbot-agent-07.jwt, %s/premium-app.jwt

Try it:

curl -sS http://%s/v1/chat/completions \
  -H "Authorization: Bearer $(cat %s/moltbot-agent-07.jwt)" \
  -H 'Content-Type: application/json' \
  -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
%s%s
`, cfg.logDir(), cfg.controlPlaneURL(), cfg.controlPlaneURL(), cfg.devAdminTokenFile(),
		cfg.controlPlaneURL()+"/console/", cfg.oidcPasswordFile(),
		cfg.EUListen, cfg.USListen, metricsURL(cfg.ControlPlaneMetricsListen), metricsURL(cfg.EUMetricsListen),
		metricsURL(cfg.USMetricsListen), cfg.MockListen, cfg.MockListen, controlLine, cfg.NATSListen,
		filepath.Join(cpapp.NATSAuthDir(cfg.DataDir), natsauth.Ops().Name+natsauth.CredsSuffix), keysLine,
		tokens, tokens, cfg.EUListen, tokens, keysExample, failExample)
}
