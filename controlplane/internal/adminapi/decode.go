package adminapi

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// maxBody bounds an admin request body.
const maxBody = 1 << 20

// readOnly lists the fields a client may send back unchanged but never sets.
var readOnly = map[string]bool{"revision": true, "created_at": true, "updated_at": true}

// readObject reads a JSON object body into its top-level fields. PATCH bodies may also
// be typed application/merge-patch+json.
func readObject(c echo.Context, patch bool) (map[string]json.RawMessage, error) {
	mt, _, err := mime.ParseMediaType(c.Request().Header.Get(echo.HeaderContentType))
	if err != nil || (mt != echo.MIMEApplicationJSON && !(patch && mt == "application/merge-patch+json")) {
		want := "application/json"
		if patch {
			want += " or application/merge-patch+json"
		}
		return nil, apierr.New(apierr.UnsupportedMedia, "the body must be sent as %s", want)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, apierr.New(apierr.BodyTooLarge, "the body is larger than %d bytes", maxBody)
		}
		return nil, apierr.Wrap(apierr.InvalidRequest, err, "could not read the request body")
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return nil, apierr.New(apierr.InvalidJSON, "the body must be a JSON object")
		}
		return nil, apierr.New(apierr.InvalidJSON, "the body is not valid JSON")
	}
	if obj == nil {
		return nil, apierr.New(apierr.InvalidJSON, "the body must be a JSON object")
	}
	return obj, nil
}

// decodeObject sets the fields of the struct v that obj names, one at a time, so that
// every bad field is reported rather than only the first. Nested objects are merged
// into the nested struct field by field. A null field takes its value in def, the
// creation defaults; so null means "default" in POST and PUT, and "remove" in a merge patch.
func decodeObject(rep *report, prefix string, obj map[string]json.RawMessage, v, def reflect.Value) {
	fields := jsonFields(v.Type())
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		path := prefix + name
		if prefix == "" && readOnly[name] {
			continue
		}
		i, ok := fields[name]
		if !ok {
			rep.fail(path, "unknown field")
			continue
		}
		raw, field := obj[name], v.Field(i)
		switch {
		case string(raw) == "null":
			field.Set(def.Field(i))
		case field.Kind() == reflect.Struct && field.Type() != timeType:
			var nested map[string]json.RawMessage
			if err := json.Unmarshal(raw, &nested); err != nil {
				rep.fail(path, "must be an object")
				continue
			}
			decodeObject(rep, path+".", nested, field, def.Field(i))
		case field.Kind() == reflect.Pointer && field.Type().Elem().Kind() == reflect.Struct && field.Type().Elem() != timeType:
			// An optional object (a tenant's guardrails): merged field by field into
			// the current one, or into a new one, so that unknown fields are reported.
			var nested map[string]json.RawMessage
			if err := json.Unmarshal(raw, &nested); err != nil {
				rep.fail(path, "must be an object")
				continue
			}
			cur := reflect.New(field.Type().Elem())
			if !field.IsNil() {
				cur.Elem().Set(field.Elem())
			}
			decodeObject(rep, path+".", nested, cur.Elem(), reflect.Zero(field.Type().Elem()))
			field.Set(cur)
		default:
			if err := json.Unmarshal(raw, field.Addr().Interface()); err != nil {
				rep.fail(path, "must be "+kindOf(field.Type()))
			}
		}
	}
}

// jsonFields maps the JSON field names of struct type t to field indexes.
func jsonFields(t reflect.Type) map[string]int {
	fields := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			fields[name] = i
		}
	}
	return fields
}

var timeType = reflect.TypeFor[time.Time]()

func kindOf(t reflect.Type) string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem() // an optional field
	}
	switch {
	case t == timeType:
		return "an RFC 3339 timestamp, e.g. 2030-01-02T15:04:05Z"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "an integer"
	case t.Kind() == reflect.Float64:
		return "a number"
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		return "an array of strings"
	}
	return "a valid " + t.String()
}
