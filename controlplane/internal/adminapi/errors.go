package adminapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/httpmetrics"
)

// storeError turns an error of the store into its public face. e is the entity that
// was being written, if any, to name the value of a dangling reference.
func (r *resource[T]) storeError(err error, e *T) error {
	if dup, ok := errors.AsType[*store.DuplicateError](err); ok {
		return apierr.Wrap(apierr.Conflict, err, "a %s with this %s already exists", r.noun, strings.Join(dup.Fields, " and "))
	}
	if ref, ok := errors.AsType[*store.ReferenceError](err); ok {
		msg := "refers to something that does not exist"
		if e != nil {
			if v, ok := fieldValue(e, ref.Field); ok {
				msg = fmt.Sprintf("no %s named %q exists", strings.ReplaceAll(ref.Field, "_", " "), v)
			}
		}
		out := apierr.Wrap(apierr.ValidationFailed, err, "%s: %s", ref.Field, msg)
		out.Fields = []apierr.FieldError{{Field: ref.Field, Message: msg}}
		return out
	}
	if use, ok := errors.AsType[*store.InUseError](err); ok {
		return apierr.Wrap(apierr.Conflict, err, "the %s is still referenced by %s; change or delete those first",
			r.noun, strings.ReplaceAll(use.By, "_", " "))
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return apierr.Wrap(apierr.NotFound, err, "%s not found", r.noun)
	case errors.Is(err, store.ErrStale):
		return stale(r.noun)
	case errors.Is(err, store.ErrBadCursor):
		out := apierr.Wrap(apierr.InvalidRequest, err, "cursor is not one this API returned")
		out.Param = "cursor"
		return out
	case errors.Is(err, store.ErrInvalid):
		return apierr.Wrap(apierr.ValidationFailed, err, "the database refused a value")
	}
	return apierr.Wrap(apierr.Internal, err, "internal error")
}

// fieldValue reads the string field of e whose JSON name is name.
func fieldValue[T any](e *T, name string) (string, bool) {
	i, ok := jsonFields(reflect.TypeFor[T]())[name]
	if !ok {
		return "", false
	}
	v := reflect.ValueOf(e).Elem().Field(i)
	if v.Kind() != reflect.String {
		return "", false
	}
	return v.String(), true
}

// ErrorHandler renders every error of the admin server in the admin error schema
// (apierr.AdminBody). Only the code and the safe message reach the client; errors
// answered with 5xx are logged with their internal cause.
func ErrorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e := public(err)
		if e.Status() >= http.StatusInternalServerError {
			log.Error("admin request failed",
				"method", httpmetrics.Method(c.Request().Method),
				"route", c.Path(),
				"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
				"code", e.Code,
				"error", err)
		}
		var werr error
		if c.Request().Method == http.MethodHead {
			werr = c.NoContent(e.Status())
		} else {
			werr = c.JSON(e.Status(), e.Admin())
		}
		if werr != nil {
			log.Debug("write admin error response", "error", werr)
		}
	}
}

// public finds the client-safe face of err.
func public(err error) *apierr.Error {
	if e, ok := errors.AsType[*apierr.Error](err); ok {
		return e
	}
	if he, ok := errors.AsType[*echo.HTTPError](err); ok {
		switch he.Code {
		case http.StatusNotFound:
			return apierr.New(apierr.NotFound, "no such endpoint")
		case http.StatusMethodNotAllowed:
			return apierr.New(apierr.MethodNotAllowed, "method not allowed")
		case http.StatusRequestEntityTooLarge:
			return apierr.New(apierr.BodyTooLarge, "request body too large")
		case http.StatusUnsupportedMediaType:
			return apierr.New(apierr.UnsupportedMedia, "unsupported media type")
		case http.StatusUnauthorized:
			return apierr.New(apierr.Unauthorized, "unauthorized")
		case http.StatusBadRequest:
			return apierr.New(apierr.InvalidRequest, "bad request")
		}
	}
	return apierr.From(err)
}
