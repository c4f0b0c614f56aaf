package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// relay turns the upstream's response into the client's. Success and the
// upstream's own 4xx answers pass through; 429 stays 429; everything else becomes a
// 502 upstream_error with the upstream's body withheld. m follows the tokens of a
// successful answer.
func relay(c echo.Context, resp *http.Response, deployment string, stream bool, m *metering) error {
	status := resp.StatusCode
	switch {
	case status == http.StatusTooManyRequests:
		upstream.Discard(resp.Body)
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			c.Response().Header().Set("Retry-After", ra)
		}
		return apierr.Wrap(apierr.RateLimited, fmt.Errorf("deployment %s answered 429", deployment),
			"the upstream is rate limiting requests; retry later")
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		upstream.Discard(resp.Body)
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("deployment %s refused the gateway's key with %d", deployment, status),
			"the upstream failed to answer")
	case status >= 500 || status < 200 || (status >= 300 && status < 400):
		upstream.Discard(resp.Body)
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("deployment %s answered %d", deployment, status),
			"the upstream failed to answer")
	}
	m.started = status/100 == 2
	if stream && status/100 == 2 && isEventStream(resp.Header.Get("Content-Type")) {
		meter := m.stream
		return relayStream(c, resp.Body, deployment, func(ev []byte) ([]byte, bool, error) {
			out := ev
			if meter != nil {
				out = meter.Observe(ev)
			}
			return out, upstream.IsDone(ev), nil
		})
	}
	if !m.started || m.stream != nil {
		m.body.on = false // an error or an unexpected non-stream answer: nothing to read usage from
		m.stream = nil
	}
	w := c.Response()
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = echo.MIMEApplicationJSON
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	var dst io.Writer = w
	if m.body.on {
		dst = io.MultiWriter(w, &m.body)
	}
	if _, err := io.CopyBuffer(dst, resp.Body, *buf); err != nil {
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("relay body from deployment %s: %w", deployment, err), "the upstream answer was cut")
	}
	return nil
}

// copyBuffers holds the buffers relay copies answers through. io.Copy would allocate
// 32 KiB for every request, as neither side has ReadFrom or WriteTo.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// streamTransform turns one upstream event into what the client gets (nil for
// nothing), reports whether the stream has ended well, and stops the stream with an
// error once it has written its own error event.
type streamTransform func(ev []byte) (out []byte, done bool, stop error)

// relayStream passes a server-sent event stream through event by event, flushing
// whenever no further event has already arrived. A stream that breaks before it is
// done ("data: [DONE]") ends with an error event and no [DONE], so the client can
// tell the answer is cut. transform sees every event first and may drop or rewrite
// it (the usage chunk a client did not ask for, or a translation).
func relayStream(c echo.Context, body io.Reader, deployment string, transform streamTransform) error {
	return relayStreamEnding(c, body, deployment, errorEvent, transform)
}

// relayStreamEnding is relayStream with cutEvent as the event that ends a broken
// stream.
//
// The response starts with the first event: a stream that breaks before it has sent
// the client nothing, and its error wraps errStreamNotStarted so that the attempt
// can be retried.
func relayStreamEnding(c echo.Context, body io.Reader, deployment string, cutEvent []byte, transform streamTransform) error {
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

func isEventStream(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "text/event-stream"
}
