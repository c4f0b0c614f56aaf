package app

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/alerting"
	"github.com/portcullis-gw/portcullis/controlplane/internal/health"
	"github.com/portcullis-gw/portcullis/shared/alerts"
	"github.com/portcullis-gw/portcullis/shared/config"
	"github.com/portcullis-gw/portcullis/shared/secretfile"
)

// minWebhookSecret is the shortest alert webhook key accepted.
const minWebhookSecret = 16

// KindPolicyLag is the alert of a worker whose policy lags the published one.
const KindPolicyLag = alerts.KindPolicyLag

// startAlerts makes the alerter every alert goes through (anomaly rules, key
// rotator, policy lag): the alerts table, PC_ALERTS and the webhook. Its webhook
// deliveries run in the App's group.
func (a *App) startAlerts(cfg Config) error {
	var secret []byte
	if cfg.AlertWebhookSecretFile != "" {
		data, err := secretfile.Read(config.EnvName("alert-webhook-secret-file"), cfg.AlertWebhookSecretFile, 64<<10)
		if err != nil {
			return fmt.Errorf("alert-webhook-secret-file: %w", err)
		}
		secret = []byte(strings.TrimSpace(string(data)))
		if len(secret) < minWebhookSecret {
			return fmt.Errorf("alert-webhook-secret-file %s: the key must be at least %d bytes", cfg.AlertWebhookSecretFile, minWebhookSecret)
		}
	}
	if cfg.AlertWebhookAllowPrivate {
		a.log.Warn("PORTCULLIS_ALERT_WEBHOOK_ALLOW_PRIVATE is on: alert webhooks may reach private, loopback and link-local addresses; never use this in production")
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	a.alerts = alerting.New(alerting.Options{Store: a.st, JetStream: js, WebhookURL: cfg.AlertWebhookURL,
		WebhookSecret: secret, AllowPrivate: cfg.AlertWebhookAllowPrivate, Log: a.log})
	a.group.Go("alerts", a.alerts.Run)
	return nil
}

// healthOptions are the health collector's: with the policy lag check raising
// policy_lag alerts, unless cfg.PolicyLagAlertAfter is 0.
func (a *App) healthOptions(cfg Config, log *slog.Logger) health.Options {
	o := health.Options{Log: log}
	if cfg.PolicyLagAlertAfter > 0 {
		o.PublishedVersion, o.PolicyLagAfter, o.OnPolicyLag = a.pub.Version, cfg.PolicyLagAlertAfter, a.policyLagAlert
	}
	return o
}

// policyLagAlert raises the policy_lag alert of lag: one per worker and version it is
// stuck at, across replicas.
func (a *App) policyLagAlert(ctx context.Context, lag health.PolicyLag) error {
	_, raised, err := a.alerts.Raise(ctx, alerting.Alert{Kind: KindPolicyLag, Severity: alerts.SeverityWarning,
		Subject:  lag.Worker,
		DedupKey: KindPolicyLag + ":" + lag.Worker + ":" + strconv.FormatInt(lag.Version, 10),
		Message: fmt.Sprintf("worker %s (region %s) runs policy version %d, behind the published version %d for %s",
			lag.Worker, lag.Region, lag.Version, lag.PublishedVersion, lag.For.Round(1e9)),
		Details: map[string]any{"worker": lag.Worker, "region": lag.Region, "policy_version": lag.Version,
			"published_version": lag.PublishedVersion, "lagging_since": lag.Since, "lag_seconds": int64(lag.For.Seconds())},
		IDPrefix: "policy-lag"})
	if raised {
		a.log.Warn("policy lag alert", "alert", KindPolicyLag, "worker", lag.Worker, "region", lag.Region,
			"policy_version", lag.Version, "published_version", lag.PublishedVersion, "since", lag.Since)
	}
	return err
}
