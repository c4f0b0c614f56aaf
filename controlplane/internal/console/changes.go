package console

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminauth"
	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
)

// changeRow is one change on the history page, with the fields it changed.
type changeRow struct {
	Seq                           int64
	At                            time.Time
	Principal, Credential, Source string
	Action, Resource, Key         string
	PolicyVersion                 *int64
	Diff                          []fieldChange
}

// fieldChange is one top-level field a change set, cleared or changed, as JSON.
type fieldChange struct{ Field, Before, After string }

// changes serves the change history, newest first, pageSize at a time, by resource
// and actor.
func (c *Console) changes(ec echo.Context) error {
	v := viewerOf(ec)
	if !v.id.Can(adminauth.ChangesRead) {
		return c.forbidden(ec, adminauth.ChangesRead)
	}
	f := store.ChangeFilter{Resource: ec.QueryParam("resource"), Principal: strings.TrimSpace(ec.QueryParam("actor")),
		Newest: true, Limit: pageSize + 1}
	if n, err := strconv.ParseInt(ec.QueryParam("before"), 10, 64); err == nil && n > 0 {
		f.BeforeSeq = n
	}
	recs, err := c.st.Changes(ec.Request().Context(), f)
	if err != nil {
		return err
	}
	resources, err := c.st.ChangeResources(ec.Request().Context())
	if err != nil {
		return err
	}
	data := map[string]any{"Resource": f.Resource, "Actor": f.Principal, "Resources": resources}
	if len(recs) > pageSize {
		recs = recs[:pageSize]
		data["Older"] = strconv.FormatInt(recs[pageSize-1].Seq, 10)
	}
	rows := make([]changeRow, len(recs))
	for i, r := range recs {
		rows[i] = changeRow{Seq: r.Seq, At: r.At, Principal: r.Principal, Credential: r.Credential, Source: r.Source,
			Action: r.Action, Resource: r.Resource, Key: r.Key, PolicyVersion: r.PolicyVersion, Diff: diff(r.Before, r.After)}
	}
	data["Items"] = rows
	return c.render(ec, http.StatusOK, "changes", page{Title: "Changes", Data: data})
}

// diff lists the top-level fields of two JSON objects that differ, by name; a
// value that is not an object is one field, "".
func diff(before, after json.RawMessage) []fieldChange {
	b, a := fields(before), fields(after)
	var out []fieldChange
	for _, k := range slices.Sorted(maps.Keys(mergeKeys(b, a))) {
		if bytes.Equal(b[k], a[k]) {
			continue
		}
		out = append(out, fieldChange{Field: k, Before: string(b[k]), After: string(a[k])})
	}
	return out
}

func fields(raw json.RawMessage) map[string]json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return map[string]json.RawMessage{"": raw}
	}
	for k, v := range m {
		var buf bytes.Buffer
		if json.Compact(&buf, v) == nil {
			m[k] = buf.Bytes()
		}
	}
	return m
}

func mergeKeys(a, b map[string]json.RawMessage) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
