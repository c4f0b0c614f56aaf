package app

import (
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/anomaly"
)

// minWebhookSecret is the shortest alert webhook key accepted.
const minWebhookSecret = 16

// startAnomaly starts the anomaly detector in the App's group, unless cfg.AnomalyCheckInterval is 0.
// Alerts are de-duplicated in Postgres, so every replica may run it.
func (a *App) startAnomaly(cfg Config) error {
	if cfg.AnomalyCheckInterval == 0 {
		a.log.Info("anomaly detection is off on this replica")
		return nil
	}
	var secret []byte
	if cfg.AlertWebhookSecretFile != "" {
		data, err := os.ReadFile(cfg.AlertWebhookSecretFile)
		if err != nil {
			return fmt.Errorf("alert-webhook-secret-file: %w", err)
		}
		secret = []byte(strings.TrimSpace(string(data)))
		if len(secret) < minWebhookSecret {
			return fmt.Errorf("alert-webhook-secret-file %s: the key must be at least %d bytes", cfg.AlertWebhookSecretFile, minWebhookSecret)
		}
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	d := anomaly.New(anomaly.Options{Store: a.st, JetStream: js, Notify: a.pub.Notify,
		Interval: cfg.AnomalyCheckInterval, WebhookURL: cfg.AlertWebhookURL, WebhookSecret: secret, Log: a.log})
	a.group.Go("anomaly detector", d.Run)
	return nil
}
