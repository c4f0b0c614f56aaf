// Command portcullis-dev runs the Portcullis dev stack in the foreground (make run),
// with package stack: PostgreSQL, the control plane with embedded NATS and the dev JWT
// issuer, a mock OpenAI-compatible upstream (bin/mockupstream, with its control API),
// and two data planes (eu and us); it seeds the demo tenant and writes a token for each
// demo client. Ctrl-C, a closed terminal (SIGHUP) and SIGTERM (to it, to make, or to
// make's whole process group) stop everything it started, within
// PORTCULLIS_DEV_STOP_SECONDS (default 8): the data planes and the mock first, then the
// control plane and the Vault; a child process left then is killed. A PostgreSQL
// cluster it started is stopped last.
//
// PostgreSQL, in order of preference:
//  1. PORTCULLIS_DATABASE_URL, if set;
//  2. a server answering on 127.0.0.1:5432 (database portcullis_dev, created if missing);
//  3. a cluster of its own under .data/pg (initdb/pg_ctl) on a free port;
//  4. otherwise it stops and says which package to install.
//
// Listen addresses (host:port), overridable from the environment:
//
//	PORTCULLIS_DEV_CONTROLPLANE_LISTEN  control plane        (default 127.0.0.1:8080)
//	PORTCULLIS_DEV_EU_LISTEN            data plane eu        (default 127.0.0.1:8081)
//	PORTCULLIS_DEV_US_LISTEN            data plane us        (default 127.0.0.1:8082)
//	PORTCULLIS_MOCK_LISTEN              mock upstream        (default 127.0.0.1:9100)
//	PORTCULLIS_MOCK_CONTROL_LISTEN      mock's control API   (default 127.0.0.1:9101; empty turns it off)
//	PORTCULLIS_EMBEDDED_NATS_LISTEN     embedded nats-server (default 127.0.0.1:14222)
//	PORTCULLIS_DEV_OIDC_LISTEN          dev OIDC provider    (default 127.0.0.1:9200; loopback only)
//
// and the planes' metrics listeners (/metrics; /debug/pprof/ too with
// PORTCULLIS_PPROF=true), each its own, host:port or "off":
//
//	PORTCULLIS_DEV_CONTROLPLANE_METRICS_LISTEN  control plane  (default 127.0.0.1:9180)
//	PORTCULLIS_DEV_EU_METRICS_LISTEN            data plane eu  (default 127.0.0.1:9181)
//	PORTCULLIS_DEV_US_METRICS_LISTEN            data plane us  (default 127.0.0.1:9182)
//
// The mock's control API (POST/GET/DELETE /mock/fail) makes one deployment fail for a
// while; it has no authentication, so keep it on loopback. PORTCULLIS_DEV_WAIT_SECONDS
// bounds each readiness wait (default 60). PORTCULLIS_DEV_DATA_DIR moves .data (admin
// token, keys, tokens, logs, NATS store) elsewhere. The planes also take every other
// PORTCULLIS_* variable of their own from the environment (for example
// PORTCULLIS_ROTATION_CHECK_INTERVAL), except a few the dev stack sets itself: the data
// planes' PORTCULLIS_EGRESS_ALLOW_HOSTS is the mock's host:port (their only upstream),
// and both planes' PORTCULLIS_KEY_DIR is .data/dev-keys (key_source file only there).
//
// Provider keys, in order of preference:
//  1. PORTCULLIS_DEV_VAULT=1 (or true): a throwaway in-memory Vault on
//     PORTCULLIS_DEV_VAULT_LISTEN (default 127.0.0.1:8200): the launcher binary
//     PORTCULLIS_DEV_VAULT_BIN names, else tests/vaultdev built the way the tests build
//     it (shared/vaulttest), once per change of its sources into the user's cache
//     directory (minutes the first time, shared with make test);
//  2. VAULT_ADDR and VAULT_TOKEN, if both are set and VAULT_ADDR is on this machine
//     (PORTCULLIS_DEV_VAULT_ALLOW_REMOTE=true allows another: the demo writes its keys
//     over secret/portcullis/* and secret/portcullis-admin/openai there);
//  3. otherwise the file .data/dev-keys/openai.key (key_source file).
//
// With a Vault, the seed writes every deployment's key to KV v2 at
// secret/portcullis/<deployment> (key_source vault, see vaultseed.go), the mock
// upstream accepts only the valid keys, and its OpenAI admin API mints the openai
// deployments' keys, so that "portcullis secrets rotate" and "revoke" work end to end.
// The planes read the token from .data/vault-token, never from the environment.
//
// Logs go to .data/logs/<name>.log. Dev tokens are written to .data/dev-tokens/ (mode
// 0600) rather than printed, so they do not end up in terminal scrollback or CI logs.
// It expects the binaries of make build in bin/ (make run builds them first).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// The first SIGINT, SIGTERM or SIGHUP stops the stack; later ones (make passes
	// SIGTERM on to its recipe while the group gets the same signal) are ignored, so
	// that none can cut the stop short. The channel stays registered until exit.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		sig := <-sigs
		cancel(signalError{sig.(syscall.Signal)})
	}()
	err := run(ctx, os.LookupEnv, os.Stdout, os.Stderr)
	var sigErr signalError
	switch {
	case errors.As(err, &sigErr):
		os.Exit(128 + int(sigErr.sig))
	case err != nil:
		fmt.Fprintln(os.Stderr, "devstack: error:", err)
		os.Exit(1)
	}
}

// signalError is the cause of the end of run's context when a signal stops the stack.
type signalError struct{ sig syscall.Signal }

func (e signalError) Error() string { return "stopped by " + e.sig.String() }

// run runs the dev stack until ctx ends (with a signalError as its cause, which run
// then returns), a child process of the stack ends, or the terminal hangs up, then
// stops it. lookupEnv reads the environment (os.LookupEnv in main).
func run(ctx context.Context, lookupEnv func(string) (string, bool), stdout, stderr io.Writer) error {
	cfg, err := loadConfig(lookupEnv)
	if err != nil {
		return err
	}
	d := &devStack{cfg: cfg, lookupEnv: lookupEnv, out: stdout, errOut: stderr}
	return d.run(ctx)
}
