// Package alerting raises the control plane's alerts, whatever raised them (the
// anomaly rules, the key rotator, the health collector's policy lag check), the same
// way: a row in Postgres's alerts table (GET /admin/v1/alerts), de-duplicated so that
// replicas raising the same alert at once record it once; a message on PC_ALERTS
// (subject alerts.<kind>.<subject>); and a signed webhook POST (see Sign), to the
// alert's own URL or the control plane's alert-webhook-url.
//
// Webhooks never follow a redirect, and never reach a private, loopback, link-local,
// unspecified or CGNAT address unless allowed (Options.AllowPrivate): the check runs
// on every connection's resolved address, so DNS cannot get around it.
package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/alerts"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
)

// Options configure an Alerter.
type Options struct {
	// Store records alerts; JetStream publishes them on PC_ALERTS. Both required.
	Store     *store.Store
	JetStream jetstream.JetStream
	// WebhookURL receives every alert that names no URL of its own; "" sends none.
	WebhookURL string
	// WebhookSecret signs webhook bodies (see Sign). Without it no webhook is sent.
	WebhookSecret []byte
	// AllowPrivate lets webhooks reach private, loopback, link-local, unspecified and
	// CGNAT addresses. Development and tests only.
	AllowPrivate bool
	Log          *slog.Logger
	// HTTPClient, when set, replaces the webhook client (a test seam): it must refuse
	// redirects and private destinations itself.
	HTTPClient *http.Client
}

// Alert is an alert to raise.
type Alert struct {
	// Kind, Severity, Message: as in shared/alerts.
	Kind, Severity, Message string
	// Subject is what the alert is about, the last token of its PC_ALERTS subject: a
	// client id, a provider, a worker.
	Subject string
	// ClientID and TenantID are the client's, for an alert about one; Rule the
	// anomaly rule that fired, if any.
	ClientID, TenantID, Rule string
	// DedupKey, with Rule and ClientID, identifies the alert: raising one that was
	// raised already does nothing.
	DedupKey string
	Details  map[string]any
	// IDPrefix names the alert on PC_ALERTS and in webhooks: "<IDPrefix>-<row id>";
	// "" is "alert".
	IDPrefix string
	// WebhookURL overrides Options.WebhookURL for this alert.
	WebhookURL string
}

// Alerter records, publishes and posts alerts. Its methods are safe for concurrent
// use. Webhook deliveries run in the background until Run ends.
type Alerter struct {
	o        Options
	webhooks *webhooks
}

// New returns an Alerter. Run bounds its webhook deliveries' life.
func New(o Options) *Alerter {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	client := o.HTTPClient
	if client == nil {
		client = newWebhookClient(o.AllowPrivate)
	}
	return &Alerter{o: o, webhooks: newWebhooks(client, o.WebhookSecret, o.Log)}
}

// Run waits until ctx ends, then cuts the webhook deliveries in flight short and
// waits for them. Alerts raised after that are recorded and published, not posted.
func (a *Alerter) Run(ctx context.Context) error {
	<-ctx.Done()
	a.Close()
	return nil
}

// Close ends the webhook deliveries and waits for them. Later alerts are not posted.
func (a *Alerter) Close() { a.webhooks.close() }

// Record stores al unless it was raised already (same Rule, ClientID and DedupKey).
// It returns the stored row and true, or false for a repeat. Notify then publishes
// and posts it; Raise does both.
func (a *Alerter) Record(ctx context.Context, al Alert) (store.Alert, bool, error) {
	details, err := json.Marshal(al.Details)
	if err != nil {
		return store.Alert{}, false, fmt.Errorf("alert details: %w", err)
	}
	if al.Details == nil {
		details = nil
	}
	return a.o.Store.RaiseAlert(ctx, store.Alert{Kind: al.Kind, Severity: al.Severity, ClientID: al.ClientID,
		TenantID: al.TenantID, Rule: al.Rule, DedupKey: al.DedupKey, Message: al.Message, Details: details})
}

// Notify publishes the recorded alert row on PC_ALERTS and posts it to its webhook in
// the background. It returns the message's id, and an error when the publish failed.
func (a *Alerter) Notify(ctx context.Context, al Alert, row store.Alert) (string, error) {
	prefix := al.IDPrefix
	if prefix == "" {
		prefix = "alert"
	}
	msg := alerts.Alert{ID: prefix + "-" + strconv.FormatInt(row.ID, 10), Kind: al.Kind, Severity: al.Severity,
		Subject: al.Subject, Message: al.Message, Details: al.Details, At: row.CreatedAt.UTC()}
	body, err := alerts.Encode(msg)
	if err != nil {
		return msg.ID, fmt.Errorf("encode alert: %w", err)
	}
	var errs []error
	if _, err := a.o.JetStream.Publish(ctx, natsnames.AlertSubject(msg.Kind, msg.Subject), body); err != nil {
		errs = append(errs, fmt.Errorf("publish alert %s: %w", msg.ID, err))
	}
	target := al.WebhookURL
	if target == "" {
		target = a.o.WebhookURL
	}
	if target != "" {
		a.webhooks.send(target, msg.ID, body)
	}
	return msg.ID, errors.Join(errs...)
}

// Raise records al and, unless it was raised already, publishes and posts it. It
// returns the row and whether it was new.
func (a *Alerter) Raise(ctx context.Context, al Alert) (store.Alert, bool, error) {
	row, raised, err := a.Record(ctx, al)
	if err != nil || !raised {
		return row, raised, err
	}
	_, err = a.Notify(ctx, al, row)
	return row, true, err
}
