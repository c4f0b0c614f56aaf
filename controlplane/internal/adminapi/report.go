package adminapi

import (
	"fmt"
	"strings"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// report collects every field problem of one request body, so that all of them are
// returned together in a 422.
type report struct {
	fields []apierr.FieldError
	failed map[string]bool // fields that could not even be decoded
}

// fail records that field could not be decoded; later checks of it are skipped.
func (r *report) fail(field, message string) {
	if r.failed == nil {
		r.failed = map[string]bool{}
	}
	r.failed[field] = true
	r.fields = append(r.fields, apierr.FieldError{Field: field, Message: message})
}

// check records message for field unless ok, or unless field (or the object holding
// it) already failed to decode.
func (r *report) check(field string, ok bool, message string) {
	if ok {
		return
	}
	for f := field; ; {
		if r.failed[f] {
			return
		}
		i := strings.LastIndexByte(f, '.')
		if i < 0 {
			break
		}
		f = f[:i]
	}
	r.fields = append(r.fields, apierr.FieldError{Field: field, Message: message})
}

// err is the 422 for the recorded problems, or nil.
func (r *report) err() error {
	switch len(r.fields) {
	case 0:
		return nil
	case 1:
		e := apierr.New(apierr.ValidationFailed, "%s: %s", r.fields[0].Field, r.fields[0].Message)
		e.Fields = r.fields
		return e
	}
	e := apierr.New(apierr.ValidationFailed, "%d fields are invalid", len(r.fields))
	e.Fields = r.fields
	return e
}

// list formats values for a message: "a", "b" and "c".
func list(values []string) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = fmt.Sprintf("%q", v)
	}
	if len(quoted) < 2 {
		return strings.Join(quoted, "")
	}
	return strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
}
