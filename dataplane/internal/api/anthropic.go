package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/anthropic"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// maxTranslatedBytes bounds a non-streamed Anthropic answer read to translate it.
const maxTranslatedBytes = 16 << 20

// anthropicBody is the Messages API body of an OpenAI chat request sent to an
// Anthropic deployment as upstreamModel. A request Anthropic cannot express is a
// 400 naming the field.
func anthropicBody(req *request, upstreamModel string, defaultMaxTokens int64) ([]byte, error) {
	body, err := anthropic.ChatRequestToMessages(req.fields, upstreamModel, defaultMaxTokens)
	var pe *anthropic.ParamError
	switch {
	case errors.As(err, &pe):
		return nil, paramError(pe.Param, pe.Message)
	case err != nil:
		return nil, apierr.Wrap(apierr.InvalidRequest, err, "the request cannot be sent to this model's upstream")
	}
	return body, nil
}

// relayAnthropic answers an OpenAI chat request from an Anthropic deployment's
// response, translating it back: the chat.completion, the chunk stream, or the
// error in OpenAI's schema.
func relayAnthropic(c echo.Context, resp *http.Response, deployment string, req *request, m *metering) error {
	status := resp.StatusCode
	if status/100 != 2 {
		if status >= 500 || status == http.StatusTooManyRequests || status == http.StatusUnauthorized || status == http.StatusForbidden {
			return relay(c, resp, deployment, false, m) // the generic mapping: 502, 429 with Retry-After
		}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		code, msg := anthropic.ErrorToOpenAI(status, raw)
		return &apierr.Error{Code: apierr.Code(code), Message: msg,
			Cause: fmt.Errorf("deployment %s answered %d", deployment, status)}
	}
	m.started = true
	if req.Stream && isEventStream(resp.Header.Get("Content-Type")) {
		tr := anthropic.NewStreamTranslator(req.Model, m.askedUsage)
		m.stream, m.translator = nil, tr
		return relayStream(c, resp.Body, deployment, func(ev []byte) ([]byte, bool, error) {
			out, err := tr.Translate(ev)
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
	m.stream = nil
	if m.body.on {
		_, _ = m.body.Write(out)
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, bytes.TrimSpace(out))
}

// relayMessages passes an Anthropic deployment's answer to a client of the native
// Messages API. A stream that breaks before message_stop ends with an Anthropic
// error event. The usage is read on the way, for the token budget.
func relayMessages(c echo.Context, resp *http.Response, deployment string, req *request, m *metering) error {
	if resp.StatusCode/100 != 2 || !req.Stream || !isEventStream(resp.Header.Get("Content-Type")) {
		m.stream = nil
		m.anthropicUsage = true
		return relay(c, resp, deployment, false, m)
	}
	m.started = true
	tr := anthropic.NewStreamTranslator(req.Model, false) // only for its usage and end
	m.stream, m.translator = nil, tr
	return relayStreamEnding(c, resp.Body, deployment, messagesCutEvent, func(ev []byte) ([]byte, bool, error) {
		_, _ = tr.Translate(ev) // an upstream error event passes through as it is
		return ev, tr.Done(), nil
	})
}

// messagesCutEvent ends a Messages stream the upstream broke off.
var messagesCutEvent = anthropic.ErrorEvent(http.StatusBadGateway, "the upstream stream ended unexpectedly")
