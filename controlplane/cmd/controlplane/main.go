// Command controlplane runs the Portcullis control plane.
//
//	controlplane [flags]                     serve (the default)
//	controlplane migrate [flags]             apply database migrations and exit
//	controlplane admin-token reset [flags]   replace every admin token with a new
//	                                         break-glass token (it may do everything),
//	                                         written to <data dir>/admin-token
//	controlplane admin-token disable [flags] disable the bootstrap and break-glass
//	                                         tokens once administrators exist
//	controlplane nats-auth [flags] [region...]
//	                                         write the NATS operator, accounts and
//	                                         credentials for an external nats-server
//	                                         to <data dir>/nats-auth (docs/nats.md)
//	controlplane nats-auth [flags] revoke role...
//	                                         revoke every credential of each role
//	                                         (dp-eu, ops, controlplane) and issue new ones
//
// Every flag can also be set with its PORTCULLIS_* environment variable; run
// "controlplane -h" for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/app"
	"github.com/portcullis-gw/portcullis/controlplane/internal/admintoken"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
)

// stopTimeout bounds a graceful shutdown: App.Stop returns by then even if a
// component hangs.
const stopTimeout = 20 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(1)
	}
}

// run executes one command line: serve until ctx ends, or a one-shot subcommand.
// getenv reads the environment (os.Getenv in main).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	sub, args := subcommand(args)
	cfg, rest, err := app.LoadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	if sub == "" && len(rest) > 0 {
		sub, rest = subcommand(rest)
	}
	if sub == "nats-auth" {
		return natsAuth(cfg, rest, stdout)
	}
	if len(rest) > 0 {
		return fmt.Errorf("unexpected arguments %q (commands: migrate, admin-token reset, admin-token disable, nats-auth)", rest)
	}
	log := logging.New(stderr, cfg.LogLevel)
	switch sub {
	case "":
		return serve(ctx, cfg, log, stdout)
	case "migrate":
		return withStore(ctx, cfg, func(st *store.Store) error {
			if err := st.Migrate(ctx); err != nil {
				return err
			}
			fmt.Fprintln(stdout, "migrations applied")
			return nil
		})
	case "admin-token reset":
		return withStore(ctx, cfg, func(st *store.Store) error {
			if err := admintoken.Reset(ctx, st, cfg.DataDir, log); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "new break-glass admin token written to %s/%s\n", strings.TrimRight(cfg.DataDir, "/"), "admin-token")
			return nil
		})
	case "admin-token disable":
		return withStore(ctx, cfg, func(st *store.Store) error {
			n, err := admintoken.Disable(ctx, st, cfg.DataDir, log)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d admin token(s) disabled (bootstrap and break-glass)\n", n)
			return nil
		})
	}
	return fmt.Errorf("unknown command %q (commands: migrate, admin-token reset, admin-token disable, nats-auth)", sub)
}

// natsAuth writes, under the data directory, what an external nats-server and its
// clients need: the operator's and accounts' keys (kept from an earlier run), the
// server's accounts.conf and operator.jwt, and new credentials for the control
// plane, ops, and the data planes of each region in regions. It prints paths,
// never a credential.
func natsAuth(cfg app.Config, regions []string, stdout io.Writer) error {
	if len(regions) > 0 && regions[0] == "revoke" {
		return natsRevoke(cfg, regions[1:], stdout)
	}
	roles := []natsauth.Role{natsauth.ControlPlane(), natsauth.Ops()}
	for _, region := range regions {
		r, err := natsauth.RoleNamed("dp-" + region)
		if err != nil || strings.HasPrefix(region, "-") {
			return fmt.Errorf("nats-auth: region %q: want a region name such as eu (flags go before the regions)", region)
		}
		roles = append(roles, r)
	}
	auth, err := natsauth.LoadOrCreate(app.NATSAuthDir(cfg.DataDir))
	if err != nil {
		return err
	}
	for _, r := range roles { // first: a region's first credentials create its account
		path, err := auth.WriteCreds(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "credentials of %s: %s\n", r.Name, path)
	}
	if err := auth.WriteServerConfig(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "nats-server configuration: include %s in the server's configuration\n",
		filepath.Join(auth.Dir(), natsauth.ServerConfigFile))
	fmt.Fprintf(stdout, "keep %s private: its .nk files sign every account and user\n", auth.Dir())
	return nil
}

// natsRevoke revokes every credential issued for each role in names, writes new
// credentials for it and the account's new JWT into accounts.conf.
func natsRevoke(cfg app.Config, names []string, stdout io.Writer) error {
	if len(names) == 0 {
		return errors.New("nats-auth revoke: name the roles whose credentials to revoke, e.g. dp-eu")
	}
	var roles []natsauth.Role
	for _, name := range names {
		r, err := natsauth.RoleNamed(name)
		if err != nil {
			return fmt.Errorf("nats-auth revoke: %w", err)
		}
		roles = append(roles, r)
	}
	auth, err := natsauth.LoadOrCreate(app.NATSAuthDir(cfg.DataDir))
	if err != nil {
		return err
	}
	for _, r := range roles {
		n, err := auth.Revoke(r.Name)
		if err != nil {
			return err
		}
		path, err := auth.WriteCreds(r)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "revoked %d credentials of %s; its new credentials: %s\n", n, r.Name, path)
	}
	if err := auth.WriteServerConfig(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "the revocations are in %s: copy it to every nats-server and reload them (nats-server --signal reload); "+
		"a control plane's embedded nats-server takes them at its next start\n", filepath.Join(auth.Dir(), natsauth.ServerConfigFile))
	return nil
}

// subcommand splits leading non-flag words off args: "migrate", "admin-token reset".
func subcommand(args []string) (string, []string) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", args
	}
	if args[0] == "admin-token" && len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		return "admin-token " + args[1], args[2:]
	}
	return args[0], args[1:]
}

// serve runs the control plane until ctx ends or one of its components fails, then
// stops it gracefully within stopTimeout.
func serve(ctx context.Context, cfg app.Config, log *slog.Logger, stdout io.Writer) error {
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "control plane listening on http://%s (NATS %s)\n", a.Addr(), logging.RedactURL(a.NATSURL()))
	if cfg.DevIssuer {
		fmt.Fprintf(stdout, "dev issuer %s, JWKS %s\n", a.IssuerURL(), a.JWKSURL())
	}
	select {
	case <-ctx.Done():
	case <-a.Done(): // a component failed: the others are stopping already
		log.Error("control plane component failed; shutting down", "err", a.Err())
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	return a.Stop(stopCtx) // returns by stopTimeout, with the failure if there was one
}

func withStore(ctx context.Context, cfg app.Config, fn func(*store.Store) error) error {
	st, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer st.Close()
	// The admin tokens' table may be newer than the database (a reset before the
	// first start of a new version).
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	return fn(st)
}
