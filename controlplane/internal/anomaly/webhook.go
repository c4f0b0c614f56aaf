package anomaly

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Headers of a webhook POST.
const (
	HeaderSignature = "X-Portcullis-Signature" // "sha256=" + hex HMAC-SHA-256 (see Sign)
	HeaderTimestamp = "X-Portcullis-Timestamp" // Unix seconds, covered by the signature
	HeaderAlertID   = "X-Portcullis-Alert-Id"
)

// Bounds of webhook delivery: each attempt's timeout, the attempts, the wait before
// the second attempt (doubling after), and the deliveries in flight at once.
const (
	webhookTimeout  = 5 * time.Second
	webhookAttempts = 3
	webhookBackoff  = time.Second
	webhookInFlight = 16
)

// Sign returns the signature header value of a webhook body sent at timestamp (Unix
// seconds): "sha256=" + hex(HMAC-SHA-256(secret, timestamp + "." + body)). Signing
// the timestamp lets a receiver refuse a replayed request by its age.
func Sign(secret []byte, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is Sign(secret, timestamp, body), in constant
// time. Receivers should also refuse a timestamp more than a few minutes old.
func Verify(secret []byte, timestamp int64, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, body)), []byte(signature))
}

// webhooks delivers alerts in the background, a bounded number at once. Its methods
// are safe for concurrent use.
type webhooks struct {
	client *http.Client
	secret []byte
	log    *slog.Logger
	slots  chan struct{}
	wg     sync.WaitGroup
}

func newWebhooks(client *http.Client, secret []byte, log *slog.Logger) *webhooks {
	return &webhooks{client: client, secret: secret, log: log, slots: make(chan struct{}, webhookInFlight)}
}

// send posts body to url in the background, retrying a failure up to
// webhookAttempts times. When webhookInFlight deliveries are running already, or no
// secret is configured, the alert is not sent and that is logged: the detector never
// waits for a webhook.
func (w *webhooks) send(ctx context.Context, url, alertID string, body []byte) {
	if len(w.secret) == 0 {
		w.log.Error("alert webhook not sent: no alert-webhook-secret-file configured", "alert_id", alertID)
		return
	}
	select {
	case w.slots <- struct{}{}:
	default:
		w.log.Error("alert webhook not sent: too many deliveries in flight", "alert_id", alertID)
		return
	}
	w.wg.Go(func() {
		defer func() { <-w.slots }()
		backoff := webhookBackoff
		for attempt := 1; ; attempt++ {
			err := w.post(ctx, url, alertID, body)
			if err == nil {
				return
			}
			if attempt == webhookAttempts || ctx.Err() != nil {
				w.log.Error("alert webhook failed", "alert_id", alertID, "attempts", attempt, "err", err)
				return
			}
			w.log.Warn("alert webhook failed; retrying", "alert_id", alertID, "attempt", attempt, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
			case <-t.C:
			}
			backoff *= 2
		}
	})
}

// post makes one delivery attempt.
func (w *webhooks) post(ctx context.Context, target, alertID string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return errors.New("webhook request: invalid URL")
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.secret, ts, body))
	req.Header.Set(HeaderAlertID, alertID)
	resp, err := w.client.Do(req)
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err // without the URL, which may hold a secret
	}
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// wait blocks until every delivery ended.
func (w *webhooks) wait() { w.wg.Wait() }
