package main

import (
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// keysRequest is the body of POST /mock/keys: one of Accept (with an optional Until)
// and Revoke.
type keysRequest struct {
	Accept string `json:"accept"`
	Until  string `json:"until"`
	Revoke string `json:"revoke"`
}

// keysView is the answer on /mock/keys: how many keys are accepted and, after a POST,
// the fingerprint of the key it named and the end it set. It never holds a key.
type keysView struct {
	Accepted    int    `json:"accepted"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Until       string `json:"until,omitempty"`
}

// serveKeys answers a call on /mock/keys; it returns the action and the key's
// fingerprint of a POST, for the log.
func (c *control) serveKeys(w http.ResponseWriter, r *http.Request) ([]any, error) {
	switch r.Method {
	case http.MethodPost:
		req, until, err := decodeKeys(w, r)
		if err != nil {
			return nil, err
		}
		var v keysView
		action := "revoke"
		switch {
		case req.Revoke != "":
			c.mock.RevokeKey(req.Revoke)
			v.Fingerprint = mockupstream.Fingerprint(req.Revoke)
		case until.IsZero():
			action = "accept"
			c.mock.AcceptKey(req.Accept)
			v.Fingerprint = mockupstream.Fingerprint(req.Accept)
		default:
			action = "accept"
			c.mock.AcceptKeyUntil(req.Accept, until)
			v.Fingerprint = mockupstream.Fingerprint(req.Accept)
			v.Until = until.UTC().Format(time.RFC3339Nano)
		}
		v.Accepted = c.mock.AcceptedKeys()
		writeJSON(w, http.StatusOK, v)
		return []any{"action", action, "fingerprint", v.Fingerprint}, nil
	case http.MethodGet:
		writeJSON(w, http.StatusOK, keysView{Accepted: c.mock.AcceptedKeys()})
		return nil, nil
	default:
		w.Header().Set("Allow", "GET, POST")
		return nil, apierr.New(apierr.MethodNotAllowed, "method %s is not allowed on %s", r.Method, keysPath)
	}
}

// decodeKeys reads a POST /mock/keys body and checks every field, reporting every
// problem at once. Problems never quote a key.
func decodeKeys(w http.ResponseWriter, r *http.Request) (keysRequest, time.Time, error) {
	var req keysRequest
	if err := decodeBody(w, r, &req, `{"accept":"<key>"}, {"accept":"<key>","until":"2030-01-01T00:00:00Z"} or {"revoke":"<key>"}`, true); err != nil {
		return req, time.Time{}, err
	}
	var problems []string
	switch {
	case req.Accept == "" && req.Revoke == "":
		problems = append(problems, "one of accept and revoke is required")
	case req.Accept != "" && req.Revoke != "":
		problems = append(problems, "accept and revoke cannot both be set")
	}
	for _, f := range []struct{ name, key string }{{"accept", req.Accept}, {"revoke", req.Revoke}} {
		if f.key == "" {
			continue
		}
		if problem := checkKey(f.key); problem != "" {
			problems = append(problems, f.name+": "+problem)
		}
	}
	var until time.Time
	if req.Until != "" {
		t, err := time.Parse(time.RFC3339, req.Until)
		switch {
		case req.Accept == "":
			problems = append(problems, "until goes only with accept")
		case err != nil:
			problems = append(problems, "until must be an RFC 3339 time such as 2030-01-01T00:00:00Z")
		default:
			until = t
		}
	}
	if len(problems) > 0 {
		return req, time.Time{}, apierr.New(apierr.InvalidRequest, "%s", strings.Join(problems, "; "))
	}
	return req, until, nil
}
