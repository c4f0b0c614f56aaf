package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/rotator"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

// startKeys logs in to Vault (when configured) and starts the key rotator and the
// ingest of the workers' key-access events in the App's group.
func (a *App) startKeys(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.DevAllowEnvKeys {
		log.Warn("PORTCULLIS_DEV_ALLOW_ENV_KEYS is on: the admin API accepts deployments whose key is an environment variable; never use this in production")
	}
	if cfg.DevAllowAnyKeyFile {
		log.Warn("PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE is on: the admin API accepts key_source file with any path, such as a worker's Vault token; never use this in production")
	}
	if cfg.Vault.Enabled() {
		v, err := vaultclient.New(ctx, cfg.Vault, log)
		if err != nil {
			return fmt.Errorf("vault: %w", err)
		}
		a.vault = v
		log.Info("logged in to vault", "addr", logging.RedactURL(cfg.Vault.Addr), "auth", cfg.Vault.Auth)
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	host, _ := os.Hostname()
	ro := rotator.Options{Store: a.st, JetStream: js, Actor: "controlplane-" + host,
		CheckInterval: cfg.RotationCheckInterval, Log: log,
		OpenAIAdminURL: cfg.OpenAIAdminURL, Alerts: a.alerts}
	if a.vault != nil {
		ro.Vault = a.vault // never a nil *Client in the interface: the rotator checks for nil
	}
	a.rotator = rotator.New(ro)
	a.group.Go("key rotator", a.rotator.Run)
	a.group.Go("key-access ingest", func(ctx context.Context) error { return rotator.Ingest(ctx, js, a.st, log) })
	return nil
}
