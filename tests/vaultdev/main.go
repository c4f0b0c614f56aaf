// Command vaultdev runs a throwaway, in-memory Vault server for Portcullis tests and the
// dev stack, the way `vault server -dev` would if Vault's CLI could be installed here.
//
// It runs Vault's real server core from its Go module (the way Vault's own tests do) and
// serves Vault's real HTTP API on a loopback port: KV v2 is mounted at secret/ (versions,
// CAS, metadata), the kv engine can be mounted again at other paths as version 1 or 2,
// AppRole can be enabled at auth/approle, and the token store is built in. All state is
// in memory and is gone when the process exits.
//
// When it is ready it prints one JSON line on stdout,
//
//	{"addr":"http://127.0.0.1:PORT","token_file":"/path"}
//
// (or with "root_token" in place of "token_file" when no -token-file is given), then
// serves until SIGINT or SIGTERM, or until its standard input reaches end of file, so that
// it dies with the process that started it. Vault's own logs go to stderr at warn level.
//
// This is its own Go module, outside the repository's go.work, so that Vault's large
// dependency graph never changes the versions the product modules use. Build it with
// `GOWORK=off go build` in this directory, or `make vaultdev` at the repository root.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	kv "github.com/hashicorp/vault-plugin-secrets-kv"
	"github.com/hashicorp/vault/builtin/credential/approle"
	"github.com/hashicorp/vault/helper/namespace"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/internalshared/configutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/vault"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "vaultdev:", err)
		os.Exit(1)
	}
}

// options are the command-line settings.
type options struct {
	listen    string
	tokenFile string
	watchIn   bool
	logLevel  string
}

// readyLine is the one JSON line printed on stdout once the server answers.
type readyLine struct {
	Addr      string `json:"addr"`
	TokenFile string `json:"token_file,omitempty"`
	RootToken string `json:"root_token,omitempty"`
}

// shutdownTimeout bounds how long in-flight HTTP requests may hold up the exit.
const shutdownTimeout = 5 * time.Second

// run starts the server, prints the ready line on stdout and serves until ctx ends or
// stdin reaches end of file (when watching it).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(opts.logLevel, stderr)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", opts.listen, err)
	}
	defer ln.Close()

	srv, err := startCore(logger)
	if err != nil {
		return err
	}
	defer srv.close()

	httpSrv := &http.Server{
		Handler: vaulthttp.Handler.Handler(&vault.HandlerProperties{
			Core:           srv.core,
			ListenerConfig: &configutil.Listener{Address: ln.Addr().String()},
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	ready := readyLine{Addr: "http://" + ln.Addr().String()}
	if opts.tokenFile != "" {
		if err := writeTokenFile(opts.tokenFile, srv.rootToken); err != nil {
			_ = httpSrv.Close()
			<-serveErr
			return err
		}
		ready.TokenFile = opts.tokenFile
		if abs, err := filepath.Abs(opts.tokenFile); err == nil {
			ready.TokenFile = abs
		}
	} else {
		ready.RootToken = srv.rootToken
	}
	if err := json.NewEncoder(stdout).Encode(ready); err != nil {
		_ = httpSrv.Close()
		<-serveErr
		return fmt.Errorf("print ready line: %w", err)
	}

	stdinClosed := make(chan struct{})
	if opts.watchIn {
		// This goroutine ends when stdin does; the process exits soon after either way.
		go func() {
			_, _ = io.Copy(io.Discard, stdin)
			close(stdinClosed)
		}()
	}

	select {
	case <-ctx.Done():
	case <-stdinClosed:
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		_ = httpSrv.Close()
	}
	if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// parseFlags reads the command line and checks it.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	var opts options
	fs := flag.NewFlagSet("vaultdev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&opts.listen, "listen", "127.0.0.1:0",
		"loopback `host:port` to serve Vault's HTTP API on (port 0 picks a free one)")
	fs.StringVar(&opts.tokenFile, "token-file", "",
		"write the root token to this `path` (mode 0600) instead of printing it in the ready line;\n"+
			"the token is a throwaway dev token for this in-memory server only")
	fs.BoolVar(&opts.watchIn, "exit-on-stdin-eof", true,
		"stop when standard input reaches end of file (keep a pipe open on it);\n"+
			"set to false when starting it with stdin on /dev/null")
	fs.StringVar(&opts.logLevel, "log-level", "warn",
		"level of Vault's logs on stderr: trace, debug, info, warn, error or off")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: vaultdev [flags]\n\n"+
			"Runs a throwaway in-memory Vault (KV v2 at secret/, AppRole and kv v1 available)\n"+
			"on a loopback port and prints one JSON line with its address when ready.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return opts, err
	}
	if fs.NArg() > 0 {
		return opts, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err := checkLoopback(opts.listen); err != nil {
		return opts, err
	}
	return opts, nil
}

// checkLoopback refuses a listen address whose host is not a loopback address: the
// server has a well-known root token and no TLS.
func checkLoopback(listen string) error {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("-listen %q: host must be a loopback address such as 127.0.0.1", listen)
	}
	return nil
}

// newLogger builds the logger for Vault's core from the -log-level flag.
func newLogger(level string, stderr io.Writer) (hclog.Logger, error) {
	if level == "off" {
		return hclog.NewNullLogger(), nil
	}
	l := hclog.LevelFromString(level)
	if l == hclog.NoLevel {
		return nil, fmt.Errorf("-log-level %q: want trace, debug, info, warn, error or off", level)
	}
	return hclog.New(&hclog.LoggerOptions{Name: "vault", Level: l, Output: stderr}), nil
}

// writeTokenFile writes token to path, readable by the owner only.
func writeTokenFile(path, token string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	// The file may have existed with wider permissions.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write token file: %w", err)
	}
	if _, err := io.WriteString(f, token); err != nil {
		f.Close()
		return fmt.Errorf("write token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	return nil
}

// devCore is an unsealed in-memory Vault core and its root token.
type devCore struct {
	core      *vault.Core
	rootToken string
	rt        *runtimeT
}

// close shuts the core down.
func (d *devCore) close() { d.rt.cleanup() }

// startCore builds, initialises and unseals an in-memory core with the kv and approle
// plugins registered, and mounts KV v2 at secret/.
func startCore(logger hclog.Logger) (_ *devCore, err error) {
	rt := &runtimeT{}
	defer func() {
		if err != nil {
			rt.cleanup()
		}
	}()
	defer rt.recoverFatal(&err)

	core, _, rootToken := vault.TestCoreUnsealedWithConfig(rt, &vault.CoreConfig{
		Logger:             logger,
		LogicalBackends:    map[string]logical.Factory{"kv": kv.Factory},
		CredentialBackends: map[string]logical.Factory{"approle": approle.Factory},
	})
	d := &devCore{core: core, rootToken: rootToken, rt: rt}
	if err := d.mountKVv2(); err != nil {
		return nil, err
	}
	return d, nil
}

// kvReadyTimeout bounds the wait for the new KV v2 mount to finish its set-up.
const kvReadyTimeout = 30 * time.Second

// mountKVv2 replaces the KV v1 mount the test core makes at secret/ with KV v2, as
// `vault server -dev` has, and waits until the mount answers.
func (d *devCore) mountKVv2() error {
	ctx := context.Background()
	if err := d.request(ctx, logical.DeleteOperation, "sys/mounts/secret", nil); err != nil {
		return fmt.Errorf("unmount secret/: %w", err)
	}
	if err := d.request(ctx, logical.UpdateOperation, "sys/mounts/secret", map[string]any{
		"type":        "kv",
		"description": "key/value secret storage (KV v2)",
		"options":     map[string]string{"version": "2"},
	}); err != nil {
		return fmt.Errorf("mount KV v2 at secret/: %w", err)
	}
	// A new KV v2 mount upgrades its storage in the background and refuses requests
	// until that is done; poll its config endpoint, a bounded number of times.
	deadline := time.Now().Add(kvReadyTimeout)
	for {
		err := d.request(ctx, logical.ReadOperation, "secret/config", nil)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("KV v2 at secret/ not ready after %s: %w", kvReadyTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// request sends one request to the core as root and returns an error for a failed or
// error response.
func (d *devCore) request(ctx context.Context, op logical.Operation, path string, data map[string]any) error {
	resp, err := d.core.HandleRequest(namespace.RootContext(ctx), &logical.Request{
		Operation:   op,
		ClientToken: d.rootToken,
		Path:        path,
		Data:        data,
	})
	if err != nil {
		return err
	}
	if resp != nil && resp.IsError() {
		return resp.Error()
	}
	return nil
}
