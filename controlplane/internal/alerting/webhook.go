package alerting

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Headers of a webhook POST.
const (
	HeaderSignature = "X-Portcullis-Signature" // SignaturePrefix + hex HMAC-SHA-256 (see Sign)
	HeaderTimestamp = "X-Portcullis-Timestamp" // Unix seconds, covered by the signature
	HeaderAlertID   = "X-Portcullis-Alert-Id"
)

// SignatureVersion names the signed string's format; it prefixes both the signed
// string and the header value. Version 1 ("sha256=", over timestamp "." body) did not
// cover the destination.
const SignatureVersion = "v2"

// SignaturePrefix starts the value of HeaderSignature.
const SignaturePrefix = SignatureVersion + "="

// Bounds of webhook delivery: each attempt's timeout, the attempts, the wait before
// the second attempt (doubling after), the deliveries in flight at once, and how
// much of an answer is read.
const (
	webhookTimeout  = 5 * time.Second
	webhookAttempts = 3
	webhookBackoff  = time.Second
	webhookInFlight = 16
	webhookMaxRead  = 64 << 10
)

// SignedString is what a webhook's signature covers: the version, the timestamp
// (Unix seconds), the destination URL exactly as configured, and the body,
//
//	"v2:" + timestamp + ":" + url + ":" + body
func SignedString(timestamp int64, url string, body []byte) []byte {
	b := make([]byte, 0, len(SignatureVersion)+24+len(url)+len(body))
	b = append(b, SignatureVersion+":"...)
	b = strconv.AppendInt(b, timestamp, 10)
	b = append(b, ':')
	b = append(b, url...)
	b = append(b, ':')
	return append(b, body...)
}

// Sign returns the signature header value of a webhook body posted to url at
// timestamp (Unix seconds): "v2=" + hex(HMAC-SHA-256(secret, SignedString(timestamp,
// url, body))). Signing the timestamp lets a receiver refuse a replay by its age;
// signing the URL lets it refuse a request signed for another destination.
func Sign(secret []byte, timestamp int64, url string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(SignedString(timestamp, url, body))
	return SignaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether signature is Sign(secret, timestamp, url, body), in
// constant time. Receivers should also refuse a timestamp more than a few minutes old.
func Verify(secret []byte, timestamp int64, url string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, timestamp, url, body)), []byte(signature))
}

// errPermanent marks a delivery failure that a retry cannot mend.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// newWebhookClient is the webhook HTTP client: it never follows a redirect (a 3xx
// is a failed delivery), uses no proxy, and, unless allowPrivate, refuses at dial
// time every connection to a private address (guardDial).
func newWebhookClient(allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: webhookTimeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = guardDial
	}
	return &http.Client{
		Timeout: webhookTimeout,
		Transport: &http.Transport{
			Proxy:                 nil, // a proxy would dial in our place, unchecked
			DialContext:           d.DialContext,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   webhookTimeout,
			ResponseHeaderTimeout: webhookTimeout,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          16,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// webhooks delivers alerts in the background, a bounded number at once, under ctx.
// Its methods are safe for concurrent use.
type webhooks struct {
	ctx    context.Context // deliveries end when it does
	cancel context.CancelFunc
	client *http.Client
	secret []byte
	log    *slog.Logger
	slots  chan struct{}
	// backoff is the wait before the second attempt (webhookBackoff; tests shorten it).
	backoff time.Duration

	mu     sync.Mutex // guards closed, and orders wg.Add before close's wg.Wait
	closed bool
	wg     sync.WaitGroup
}

func newWebhooks(client *http.Client, secret []byte, log *slog.Logger) *webhooks {
	ctx, cancel := context.WithCancel(context.Background())
	return &webhooks{ctx: ctx, cancel: cancel, client: client, secret: secret, log: log,
		slots: make(chan struct{}, webhookInFlight), backoff: webhookBackoff}
}

// send posts body to url in the background, retrying a failure up to
// webhookAttempts times (a refused destination is not retried). When
// webhookInFlight deliveries are running already, no secret is configured, or the
// deliveries are over (ctx ended), the alert is not sent and that is logged: the
// caller never waits for a webhook.
func (w *webhooks) send(target, alertID string, body []byte) {
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
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.slots
		w.log.Error("alert webhook not sent: the control plane is stopping", "alert_id", alertID)
		return
	}
	w.wg.Add(1)
	w.mu.Unlock()
	go func() {
		defer w.wg.Done()
		defer func() { <-w.slots }()
		backoff := w.backoff
		for attempt := 1; ; attempt++ {
			err := w.post(w.ctx, target, alertID, body)
			if err == nil {
				return
			}
			if _, permanent := errors.AsType[errPermanent](err); permanent || attempt == webhookAttempts || w.ctx.Err() != nil {
				w.log.Error("alert webhook failed", "alert_id", alertID, "attempts", attempt, "err", err)
				return
			}
			w.log.Warn("alert webhook failed; retrying", "alert_id", alertID, "attempt", attempt, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-w.ctx.Done():
				t.Stop()
			case <-t.C:
			}
			backoff *= 2
		}
	}()
}

// post makes one delivery attempt. A redirect is a failure, never followed.
func (w *webhooks) post(ctx context.Context, target, alertID string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return errPermanent{errors.New("webhook request: invalid URL")}
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.secret, ts, target, body))
	req.Header.Set(HeaderAlertID, alertID)
	resp, err := w.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err // without the URL, which may hold a secret
		}
		if errors.Is(err, ErrPrivateDestination) {
			return errPermanent{err}
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, webhookMaxRead))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return fmt.Errorf("webhook answered %s, a redirect: webhooks never follow redirects; configure the final URL", resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// close cuts the deliveries in flight short, refuses new ones and waits until every
// delivery ended.
func (w *webhooks) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}
