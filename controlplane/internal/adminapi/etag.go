package adminapi

import (
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

// etag is the strong entity tag of a revision.
func etag(revision int64) string { return `"` + strconv.FormatInt(revision, 10) + `"` }

// precondition evaluates If-Match for a write to key and returns the revision the write
// must find, 0 meaning any. Without the header it fails with 428 if required.
func (r *resource[T]) precondition(c echo.Context, key string, required bool) (int64, error) {
	header := c.Request().Header.Get("If-Match")
	if header == "" {
		if required {
			return 0, apierr.New(apierr.PreconditionRequired,
				"If-Match is required: send the ETag of the %s you read, or * to overwrite it regardless", r.noun)
		}
		return 0, nil
	}
	var revisions []int64
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return 0, nil
		}
		// Only strong tags count: If-Match never matches a weak one (W/"3").
		if len(tag) < 2 || tag[0] != '"' || tag[len(tag)-1] != '"' {
			continue
		}
		if n, err := strconv.ParseInt(tag[1:len(tag)-1], 10, 64); err == nil && n > 0 {
			revisions = append(revisions, n)
		}
	}
	switch len(revisions) {
	case 0:
		return 0, stale(r.noun)
	case 1:
		return revisions[0], nil
	}
	cur, err := r.coll.Get(c.Request().Context(), key)
	if err != nil {
		return 0, r.storeError(err, nil)
	}
	if !slices.Contains(revisions, cur.Revision) {
		return 0, stale(r.noun)
	}
	return cur.Revision, nil
}

func stale(noun string) *apierr.Error {
	return apierr.New(apierr.PreconditionFailed,
		"the %s has changed since the ETag in If-Match was read; read it again and retry", noun)
}
