package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/dataplane/internal/anthropic"
	"github.com/portcullis-gw/portcullis/dataplane/internal/auth"
	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// handleError is the one place an error becomes a response: OpenAI's error schema
// with the code's status, plus WWW-Authenticate on 401. The internal cause goes on
// the request's access log line, never to the client.
func (s *server) handleError(err error, c echo.Context) {
	e := toAPIError(err)
	if errors.Is(err, echo.ErrNotFound) {
		e = notFound(c.Request())
	}
	ri := info(c)
	ri.errCode = string(e.Code)
	if e.Cause != nil {
		ri.errCause = e.Cause.Error()
	}
	var rejected *auth.RejectedError
	if errors.As(err, &rejected) {
		ri.errReason = string(rejected.Reason)
	}
	if c.Response().Committed {
		return // a stream already under way; its error event has been written
	}
	if e.Code == apierr.InvalidToken {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer error="invalid_token"`)
	}
	if c.Path() == messagesRoute { // Anthropic's clients get Anthropic's error schema
		if err := c.JSONBlob(e.Status(), anthropic.ErrorBody(e.Status(), e.Message)); err != nil {
			ri.errCause += "; writing the error response: " + err.Error()
		}
		return
	}
	if err := c.JSON(e.Status(), e.OpenAI()); err != nil {
		ri.errCause += "; writing the error response: " + err.Error()
	}
}

// notFound answers an unknown endpoint the way OpenAI does.
func notFound(r *http.Request) *apierr.Error {
	path := r.URL.Path
	if len(path) > 200 {
		path = path[:200] + "..."
	}
	return apierr.New(apierr.NotFound, "Invalid URL (%s %s)", r.Method, path)
}

// toAPIError maps echo's own errors (unknown route, wrong method) to registry codes.
func toAPIError(err error) *apierr.Error {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return apierr.Wrap(apierr.NotFound, err, "unknown endpoint")
		case http.StatusMethodNotAllowed:
			return apierr.Wrap(apierr.MethodNotAllowed, err, "method not allowed on this endpoint")
		case http.StatusRequestEntityTooLarge:
			return apierr.Wrap(apierr.BodyTooLarge, err, "the request body is too large")
		}
		if he.Code < 500 {
			return apierr.Wrap(apierr.InvalidRequest, err, "invalid request")
		}
	}
	return apierr.From(err)
}
