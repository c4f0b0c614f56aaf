package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/anthropic"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// messages carries Anthropic's Messages API to an Anthropic deployment natively:
// the client's request with the deployment's model name, and the answer as it comes.
// A stream is read on the way for its usage and its text; one that breaks before
// message_stop ends with an Anthropic error event.
type messages struct {
	x      *exchange
	began  bool
	stream *anthropic.StreamTranslator // reads a streamed answer's usage and end
	body   *capture                    // a non-streamed answer, when the exchange keeps it
}

func newMessages(x *exchange) translator { return &messages{x: x} }

func (t *messages) request(req *request, upstreamModel string) (string, []byte, error) {
	body, err := req.withModel(upstreamModel)
	if err != nil {
		return "", nil, apierr.Wrap(apierr.Internal, err, "internal error")
	}
	return upstream.PathMessages, body, nil
}

func (t *messages) relay(c echo.Context, resp *http.Response, deployment string) error {
	if err := upstreamFailure(c, resp, deployment); err != nil {
		return err
	}
	t.began = resp.StatusCode/100 == 2
	req := t.x.req
	if t.began && req.Stream && isEventStream(resp.Header.Get("Content-Type")) {
		tr := anthropic.NewStreamTranslator(req.Model, false) // only for its usage, text and end
		t.stream = tr
		guard := newStreamGuard(t.x, apiAnthropic)
		return relayStream(c, resp.Body, deployment, messagesCutEvent, func(ev []byte) ([]byte, bool, error) {
			_, _ = tr.Translate(ev) // an upstream error event passes through as it is
			if t.x.watch != nil {
				if end, stop := watchDelta(t.x.watch, apiAnthropic, []byte(tr.EventText())); stop != nil {
					return end, false, stop
				}
			}
			if guard != nil {
				out, stop := guard.events(ev)
				return out, tr.Done() && stop == nil, stop
			}
			return ev, tr.Done(), nil
		})
	}
	if t.began && t.x.capture {
		t.body = &capture{}
		return copyAnswer(c, resp, deployment, t.body, guardOf(t.x))
	}
	return copyAnswer(c, resp, deployment, nil, guardOf(t.x))
}

func (t *messages) started() bool { return t.began }

func (t *messages) usage(int64) (int64, int64, bool) {
	switch {
	case t.stream != nil:
		return t.stream.Usage()
	case t.body == nil || t.body.overflow:
		return 0, 0, false
	}
	return anthropic.Usage(t.body.buf.Bytes())
}

// messagesCutEvent ends a Messages stream the upstream broke off.
var messagesCutEvent = anthropic.ErrorEvent(http.StatusBadGateway, "the upstream stream ended unexpectedly")
