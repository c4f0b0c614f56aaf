package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/dataplane/internal/usage"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// passthrough carries the OpenAI API to a provider that speaks it (OpenAI, and
// Ollama's OpenAI-compatible API): the client's request with the deployment's model
// name, and the answer as it comes, but for the usage chunk of a stream whose client
// did not ask for it (see prepareStream).
type passthrough struct {
	x      *exchange
	began  bool
	stream *usage.StreamMeter // a streamed answer's meter
	body   *capture           // a non-streamed answer, when the exchange keeps it
}

func newPassthrough(x *exchange) translator { return &passthrough{x: x} }

func (t *passthrough) request(req *request, upstreamModel string) (string, []byte, error) {
	body, err := req.withModel(upstreamModel)
	if err != nil {
		return "", nil, apierr.Wrap(apierr.Internal, err, "internal error")
	}
	return req.path, body, nil
}

func (t *passthrough) relay(c echo.Context, resp *http.Response, deployment string) error {
	if err := upstreamFailure(c, resp, deployment); err != nil {
		return err
	}
	req := t.x.req
	t.began = resp.StatusCode/100 == 2
	if req.Stream && t.began && isEventStream(resp.Header.Get("Content-Type")) {
		if req.op == policy.OpEmbeddings { // nothing to meter: passed through as it is
			return relayStream(c, resp.Body, deployment, errorEvent, func(ev []byte) ([]byte, bool, error) {
				return ev, upstream.IsDone(ev), nil
			})
		}
		meter := usage.NewStreamMeter(!req.askedUsage)
		if t.x.watch != nil {
			meter.KeepEventText()
		}
		t.stream = meter
		guard := newStreamGuard(t.x, apiOpenAI)
		return relayStream(c, resp.Body, deployment, errorEvent, func(ev []byte) ([]byte, bool, error) {
			out := meter.Observe(ev)
			if end, stop := watchDelta(t.x.watch, apiOpenAI, meter.EventText()); stop != nil {
				return end, false, stop
			}
			if guard != nil {
				var stop error
				if out, stop = guard.events(out); stop != nil {
					return out, false, stop
				}
			}
			return out, upstream.IsDone(ev), nil
		})
	}
	if t.began && t.x.capture {
		t.body = &capture{}
		return copyAnswer(c, resp, deployment, t.body, guardOf(t.x))
	}
	return copyAnswer(c, resp, deployment, nil, guardOf(t.x))
}

func (t *passthrough) started() bool { return t.began }

func (t *passthrough) usage(prompt int64) (int64, int64, bool) {
	switch {
	case t.stream != nil:
		if u, ok := t.stream.Usage(); ok {
			return u.PromptTokens, u.CompletionTokens, true
		}
		return prompt, t.stream.CompletionTokens(), true
	case t.body == nil:
		return prompt, 0, true // a stream without a meter, or an answer not kept
	case t.body.overflow:
		return 0, 0, false // too large to inspect
	}
	answer := t.body.buf.Bytes()
	if u, ok := usage.FromResponse(answer); ok {
		return u.PromptTokens, u.CompletionTokens, true
	}
	return prompt, usage.CountText(usage.CompletionText(answer)), true
}

// prepareStream makes a streamed OpenAI request ask the upstream for usage in the
// stream's last chunk (stream_options.include_usage), remembering whether the client
// asked for it, so the usage chunk can be hidden from a client that did not. A
// stream_options that is not an object is a 400.
func prepareStream(req *request) error {
	asked, so, err := usage.WithStreamUsage(req.fields["stream_options"])
	if err != nil {
		return errBadStreamOptions
	}
	req.fields["stream_options"] = so
	req.askedUsage = asked
	return nil
}

// errBadStreamOptions is the 400 of a stream_options that is not an object.
var errBadStreamOptions = paramError("stream_options", "stream_options must be an object")
