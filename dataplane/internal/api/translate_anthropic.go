package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/anthropic"
	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/dataplane/internal/usage"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// chatToMessages carries an OpenAI chat request to an Anthropic deployment: the
// request translated to the Messages API, and the answer translated back to a
// chat.completion, a chunk stream, or an error in OpenAI's schema.
type chatToMessages struct {
	x      *exchange
	began  bool
	stream *anthropic.StreamTranslator // a streamed answer's translator
	answer []byte                      // the translated non-streamed answer, when the exchange keeps it
}

func newChatToMessages(x *exchange) translator { return &chatToMessages{x: x} }

// maxTranslatedBytes bounds a non-streamed Anthropic answer read to translate it.
const maxTranslatedBytes = 16 << 20

// request translates the chat request to the Messages API. A request Anthropic
// cannot express is a 400 naming the field. Its max_tokens is the one admission
// wrote into the request, else DefaultMaxTokens.
func (t *chatToMessages) request(req *request, upstreamModel string) (string, []byte, error) {
	body, err := anthropic.ChatRequestToMessages(req.fields, upstreamModel, DefaultMaxTokens)
	var pe *anthropic.ParamError
	switch {
	case errors.As(err, &pe):
		return "", nil, paramError(pe.Param, pe.Message)
	case err != nil:
		return "", nil, apierr.Wrap(apierr.InvalidRequest, err, "the request cannot be sent to this model's upstream")
	}
	return upstream.PathMessages, body, nil
}

func (t *chatToMessages) relay(c echo.Context, resp *http.Response, deployment string) error {
	status := resp.StatusCode
	if status/100 != 2 {
		if err := upstreamFailure(c, resp, deployment); err != nil {
			return err
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		code, msg := anthropic.ErrorToOpenAI(status, redactAccountIDs(raw))
		return &apierr.Error{Code: apierr.Code(code), Message: msg,
			Cause: fmt.Errorf("deployment %s answered %d", deployment, status)}
	}
	t.began = true
	req := t.x.req
	if req.Stream && isEventStream(resp.Header.Get("Content-Type")) {
		tr := anthropic.NewStreamTranslator(req.Model, req.askedUsage)
		t.stream = tr
		guard := newStreamGuard(t.x, apiOpenAI)
		return relayStream(c, resp.Body, deployment, errorEvent, func(ev []byte) ([]byte, bool, error) {
			out, err := tr.Translate(ev)
			if t.x.watch != nil {
				if end, stop := watchDelta(t.x.watch, apiOpenAI, []byte(tr.EventText())); stop != nil {
					return end, false, stop
				}
			}
			if guard != nil && err == nil {
				var stop error
				if out, stop = guard.events(out); stop != nil {
					return out, false, stop
				}
			}
			return out, tr.Done(), err
		})
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxTranslatedBytes+1))
	if err != nil {
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("read answer of deployment %s: %w", deployment, err), "the upstream answer was cut")
	}
	if len(raw) > maxTranslatedBytes {
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("answer of deployment %s is over %d bytes", deployment, maxTranslatedBytes),
			"the upstream answer is too large")
	}
	out, err := anthropic.MessageToChatCompletion(raw, req.Model)
	if err != nil {
		return apierr.Wrap(apierr.UpstreamError, fmt.Errorf("translate answer of deployment %s: %w", deployment, err), "the upstream answer could not be read")
	}
	if g := guardOf(t.x); g != nil {
		if out, err = g.g.guardAnswer(apiOpenAI, out); err != nil {
			return err
		}
	}
	if t.x.capture {
		t.answer = out
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, bytes.TrimSpace(out))
}

func (t *chatToMessages) started() bool { return t.began }

func (t *chatToMessages) usage(prompt int64) (int64, int64, bool) {
	switch {
	case t.stream != nil:
		return t.stream.Usage()
	case t.answer == nil:
		return prompt, 0, true
	}
	if u, ok := usage.FromResponse(t.answer); ok {
		return u.PromptTokens, u.CompletionTokens, true
	}
	return prompt, usage.CountText(usage.CompletionText(t.answer)), true
}
