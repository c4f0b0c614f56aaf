package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/anthropic"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// upstreamFailure maps an answer the client must not see as it is to the gateway's
// error, discarding its body: 429 stays 429 (with the upstream's Retry-After), a
// refused key (401, 403), 5xx, 1xx and 3xx become a 502 upstream_error. It returns
// nil for the answers that pass through: success and the upstream's own 4xx.
func upstreamFailure(c echo.Context, resp *http.Response, deployment string) error {
	status := resp.StatusCode
	if reachesClient(status) {
		return nil
	}
	upstream.Discard(resp.Body)
	switch status {
	case http.StatusTooManyRequests:
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			c.Response().Header().Set("Retry-After", ra)
		}
		return apierr.Wrap(apierr.RateLimited, fmt.Errorf("deployment %s answered 429", deployment),
			"the upstream is rate limiting requests; retry later")
	case http.StatusUnauthorized, http.StatusForbidden:
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("deployment %s refused the gateway's key with %d", deployment, status),
			"the upstream failed to answer")
	}
	return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("deployment %s answered %d", deployment, status),
		"the upstream failed to answer")
}

// reachesClient reports whether an answer with status is relayed to the client as
// it is (upstreamFailure maps the others): success and the upstream's own 4xx, not
// 429, a refused key, 5xx, 1xx or 3xx.
func reachesClient(status int) bool {
	switch {
	case status == http.StatusTooManyRequests, status == http.StatusUnauthorized, status == http.StatusForbidden:
		return false
	}
	return status/100 == 2 || status/100 == 4
}

// copyAnswer relays a non-streamed answer with its status and content type,
// writing it also to keep when that is not nil. Only JSON is relayed (an answer
// without a content type counts as JSON): any other body, an HTML error page of a
// proxy in front of the upstream for instance, is not; it becomes a 502
// upstream_error, or for a 4xx a 400 invalid_request saying the status. The
// upstream's own 4xx error is relayed with the provider's account identifiers
// taken out of it (see redactAccountIDs).
func copyAnswer(c echo.Context, resp *http.Response, deployment string, keep *capture, guard *answerGuard) error {
	w := c.Response()
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = echo.MIMEApplicationJSON
	}
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != echo.MIMEApplicationJSON {
		upstream.Discard(resp.Body)
		cause := fmt.Errorf("deployment %s answered %d with content type %q", deployment, resp.StatusCode, ct)
		if resp.StatusCode/100 == 4 { // the request's fault still, but its words are not relayed
			return apierr.Wrap(apierr.InvalidRequest, cause, "the upstream refused the request (status %d)", resp.StatusCode)
		}
		return apierr.Wrap(apierr.UpstreamError, cause, "the upstream answered with content this API does not use")
	}
	if resp.StatusCode/100 == 4 {
		return relayClientError(c, resp, deployment, ct)
	}
	if guard != nil && guard.g.guardsAnswer() {
		return copyGuardedAnswer(c, resp, deployment, keep, ct, guard)
	}
	w.Header().Set("Content-Type", ct)
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	var dst io.Writer = w
	if keep != nil {
		dst = io.MultiWriter(w, keep)
	}
	// An answer that fits the buffer, nearly every one, is read whole first: it goes
	// out with its Content-Length, so that observe can flush it before the access log
	// line, the metrics and the audit event are made, and an upstream that breaks off
	// before its end gets a clean 502 rather than a cut 200.
	b, n := *buf, 0
	var err error
	for n < len(b) && err == nil {
		var m int
		m, err = resp.Body.Read(b[n:])
		n += m
	}
	if err != nil && err != io.EOF { // io.ErrUnexpectedEOF too: the body is shorter than its Content-Length
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("relay body from deployment %s: %w", deployment, err), "the upstream answer was cut")
	}
	whole := err == io.EOF
	if whole {
		w.Header().Set("Content-Length", strconv.Itoa(n))
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := dst.Write(b[:n]); err != nil {
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("relay body from deployment %s: %w", deployment, err), "the upstream answer was cut")
	}
	if whole {
		info(c).whole = true
		return nil
	}
	if _, err := io.CopyBuffer(dst, resp.Body, b); err != nil {
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("relay body from deployment %s: %w", deployment, err), "the upstream answer was cut")
	}
	return nil
}

// maxClientErrorBytes bounds an upstream's 4xx answer read to relay it.
const maxClientErrorBytes = 64 << 10

// answerGuard is the guardrails an answer in the client's API goes through.
type answerGuard struct {
	g   *guarded
	api clientAPI
}

// guardOf is the answer guard of x, nil when its answer needs none.
func guardOf(x *exchange) *answerGuard {
	if !x.guard.guardsAnswer() {
		return nil
	}
	return &answerGuard{g: x.guard, api: x.req.api}
}

// copyGuardedAnswer is copyAnswer for an answer the guardrails must see whole
// first: it is read (up to maxTranslatedBytes), guarded, then written.
func copyGuardedAnswer(c echo.Context, resp *http.Response, deployment string, keep *capture, ct string, guard *answerGuard) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxTranslatedBytes+1))
	if err != nil {
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("read answer of deployment %s: %w", deployment, err), "the upstream answer was cut")
	}
	if len(raw) > maxTranslatedBytes {
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("answer of deployment %s is over %d bytes", deployment, maxTranslatedBytes),
			"the upstream answer is too large for the guardrails")
	}
	out, err := guard.g.guardAnswer(guard.api, raw)
	if err != nil {
		return err
	}
	if keep != nil {
		_, _ = keep.Write(out)
	}
	return c.Blob(resp.StatusCode, ct, out)
}

// relayClientError relays the upstream's own 4xx answer, JSON of content type ct,
// with the provider's account identifiers taken out.
func relayClientError(c echo.Context, resp *http.Response, deployment, ct string) error {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxClientErrorBytes+1))
	switch {
	case err != nil:
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("read the %d answer of deployment %s: %w", resp.StatusCode, deployment, err), "the upstream answer was cut")
	case len(raw) > maxClientErrorBytes:
		upstream.Discard(resp.Body)
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("the %d answer of deployment %s is over %d bytes", resp.StatusCode, deployment, maxClientErrorBytes),
			"the upstream's error answer is too large")
	}
	return c.Blob(resp.StatusCode, ct, redactAccountIDs(raw))
}

// accountID matches the provider account identifiers an upstream's error message
// may carry: OpenAI's organization (org-…), project (proj_…) and user (user-…) ids,
// 16 or more letters and digits after the prefix (so "user-defined" stays).
// They name the gateway's accounts, which are no business of its clients.
var accountID = regexp.MustCompile(`\b(org|proj|user)([-_])[A-Za-z0-9]{16,}\b`)

// redactAccountIDs replaces each provider account identifier in b with its kind
// ("org-redacted", "proj_redacted").
func redactAccountIDs(b []byte) []byte {
	return accountID.ReplaceAll(b, []byte("${1}${2}redacted"))
}

// captureLimit bounds how much of a non-streamed answer is kept to read its usage.
const captureLimit = 8 << 20

// capture keeps the first captureLimit bytes written to it; past that it keeps
// nothing and says so.
type capture struct {
	buf      bytes.Buffer
	overflow bool
}

func (c *capture) Write(p []byte) (int, error) {
	if c.overflow {
		return len(p), nil
	}
	if c.buf.Len()+len(p) > captureLimit {
		c.overflow = true
		c.buf.Reset()
		return len(p), nil
	}
	return c.buf.Write(p)
}

// copyBuffers holds the buffers relay copies answers through. io.Copy would allocate
// 32 KiB for every request, as neither side has ReadFrom or WriteTo.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// streamTransform turns one upstream event into what the client gets (nil for
// nothing), reports whether the stream has ended well, and stops the stream with an
// error once it has written its own error event.
type streamTransform func(ev []byte) (out []byte, done bool, stop error)

// relayStream passes a server-sent event stream through event by event, flushing
// whenever no further event has already arrived. transform sees every event first
// and may drop or rewrite it (the usage chunk a client did not ask for, or a
// translation). A stream that breaks before it is done ends with cutEvent, the
// client API's error event, so the client can tell the answer is cut.
//
// The response starts with the first event: a stream that breaks before it has sent
// the client nothing, and its error wraps errStreamNotStarted so that the attempt
// can be retried. A transform that stops the stream with a *guardStop (a
// StreamWatcher refused the text) ends it with the guard's error.
func relayStream(c echo.Context, body io.Reader, deployment string, cutEvent []byte, transform streamTransform) error {
	w := c.Response()
	events := upstream.NewEventReader(body, upstream.MaxEventBytes)
	defer events.Release()
	done, started := false, false
	for {
		ev, err := events.Next()
		if err != nil {
			if done {
				return nil // anything after [DONE] does not matter
			}
			if ctxErr := c.Request().Context().Err(); ctxErr != nil {
				return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("client went away during stream from deployment %s: %w", deployment, ctxErr), "request cancelled")
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // ended without [DONE]
			}
			if !started {
				return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("stream from deployment %s broke before its first event: %w: %w", deployment, errStreamNotStarted, err),
					"the upstream stream ended unexpectedly")
			}
			_, _ = w.Write(cutEvent)
			w.Flush()
			return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("stream from deployment %s broke: %w", deployment, err), "the upstream stream ended unexpectedly")
		}
		if !started {
			started = true
			info(c).firstEvent = time.Now()
			h := w.Header()
			h.Set("Content-Type", "text/event-stream")
			h.Set("Cache-Control", "no-cache")
			h.Set("X-Accel-Buffering", "no")
			w.WriteHeader(http.StatusOK)
		}
		out, evDone, stop := transform(ev)
		done = done || evDone
		if len(out) > 0 {
			if _, err := w.Write(out); err != nil {
				return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("write stream to client: %w", err), "request cancelled")
			}
		}
		if stop != nil {
			w.Flush()
			if gs := (*guardStop)(nil); errors.As(stop, &gs) {
				return gs
			}
			return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("stream from deployment %s: %w", deployment, stop), "the upstream stream failed")
		}
		if !events.EventReady() { // else the next event leaves with this one
			w.Flush()
		}
	}
}

// errStreamNotStarted marks a stream that broke before anything reached the client.
var errStreamNotStarted = errors.New("nothing sent to the client yet")

// errorEvent is the last event of a stream the upstream broke off.
var errorEvent = func() []byte {
	b, err := json.Marshal(apierr.New(apierr.UpstreamError, "the upstream stream ended unexpectedly").OpenAI())
	if err != nil {
		panic(err)
	}
	return []byte("data: " + string(b) + "\n\n")
}()

// guardStop is how a stream a StreamWatcher refused ends: err is the watcher's
// error, and the upstream is not to blame for it.
type guardStop struct{ err *apierr.Error }

func (g *guardStop) Error() string { return "the guard stopped the stream: " + g.err.Error() }
func (g *guardStop) Unwrap() error { return g.err }

// watchDelta shows text, one streamed delta, to watch (if any). When the watcher
// refuses it, it returns the event that ends the client's stream in api's schema
// and the stop for the stream transform.
func watchDelta(watch StreamWatcher, api clientAPI, text []byte) (event []byte, stop error) {
	if watch == nil || len(text) == 0 {
		return nil, nil
	}
	err := watch.Delta(text)
	if err == nil {
		return nil, nil
	}
	e := apierr.From(err)
	if api == apiAnthropic {
		return anthropic.ErrorEvent(e.Status(), e.Message), &guardStop{err: e}
	}
	b, merr := json.Marshal(e.OpenAI())
	if merr != nil {
		b = []byte(`{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}`)
	}
	return append(append([]byte("data: "), b...), "\n\n"...), &guardStop{err: e}
}

func isEventStream(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "text/event-stream"
}
