package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// Limits of the control API.
const (
	failPath         = "/mock/fail"
	keysPath         = "/mock/keys"
	requestsPath     = "/mock/requests"
	maxControlBody   = 64 << 10
	maxFailSeconds   = 3600
	modeNone         = "none"
	modeList         = "5xx, 429, hang, cut_stream or none"
	deploymentFormat = "1 to 128 letters, digits, '.', '_' or '-'"
)

// modes are the failure modes the control API names, as mockupstream injects them.
var modes = map[string]mockupstream.Failure{
	"5xx":        mockupstream.Fail500,
	"429":        mockupstream.Fail429,
	"hang":       mockupstream.FailHang,
	"cut_stream": mockupstream.FailCutStream,
	modeNone:     mockupstream.FailNone,
}

var deploymentName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// modeName is the control API's name of f, or f's Go name for a failure the API
// cannot set.
func modeName(f mockupstream.Failure) string {
	for name, m := range modes {
		if m == f {
			return name
		}
	}
	return f.String()
}

// control serves the mock's control API, on a listener of its own:
//
//	POST   /mock/fail  {"deployment":"openai-eu","mode":"5xx","for_seconds":60}
//	GET    /mock/fail  the failures in force
//	DELETE /mock/fail  ends them all
//	POST   /mock/keys  {"accept":"<key>"}, {"accept":"<key>","until":"<RFC 3339>"} or {"revoke":"<key>"}
//	GET    /mock/keys  {"accepted":<how many keys are accepted>}, never the keys
//
// It has no authentication: it must only listen on loopback. It logs one line per
// call, naming at most the deployment and the mode, or the key's action and
// fingerprint.
type control struct {
	mock *mockupstream.Server
	log  *slog.Logger
	now  func() time.Time
}

var _ http.Handler = (*control)(nil)

func newControl(mock *mockupstream.Server, log *slog.Logger) *control {
	return &control{mock: mock, log: log, now: time.Now}
}

// failRequest is the body of POST /mock/fail.
type failRequest struct {
	Deployment string `json:"deployment"`
	Mode       string `json:"mode"`
	ForSeconds *int   `json:"for_seconds"`
}

// failView is one failure as the control API shows it; Until is absent for "none".
type failView struct {
	Deployment string `json:"deployment"`
	Mode       string `json:"mode"`
	Until      string `json:"until,omitempty"`
}

func viewOf(f mockupstream.DeploymentFailure) failView {
	return failView{Deployment: f.Deployment, Mode: modeName(f.Failure), Until: f.Until.UTC().Format(time.RFC3339)}
}

// ServeHTTP answers one control call and logs it; errors are rendered as
// {"error":{"code","message"}}.
func (c *control) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	var logAttrs []any // what a POST did, for the log
	var err error
	switch r.URL.Path {
	case failPath:
		logAttrs, err = c.serveFail(sw, r)
	case keysPath:
		logAttrs, err = c.serveKeys(sw, r)
	case requestsPath:
		err = c.serveRequests(sw, r)
	default:
		err = apierr.New(apierr.NotFound, "no such control endpoint; use %s, %s or %s", failPath, keysPath, requestsPath)
	}
	if err != nil {
		e := apierr.From(err)
		writeJSON(sw, e.Status(), e.Admin())
	}
	attrs := append([]any{"method", r.Method, "path", r.URL.Path, "status", sw.status}, logAttrs...)
	c.log.Info("control", attrs...)
}

// serveFail answers a call on /mock/fail; it returns the deployment and mode a POST
// set, for the log.
func (c *control) serveFail(w http.ResponseWriter, r *http.Request) ([]any, error) {
	switch r.Method {
	case http.MethodPost:
		v, err := c.setFailure(w, r)
		if err != nil {
			return nil, err
		}
		writeJSON(w, http.StatusOK, v)
		return []any{"deployment", v.Deployment, "mode", v.Mode}, nil
	case http.MethodGet:
		active := c.mock.DeploymentFailures()
		data := make([]failView, 0, len(active))
		for _, f := range active {
			data = append(data, viewOf(f))
		}
		writeJSON(w, http.StatusOK, struct {
			Data []failView `json:"data"`
		}{data})
	case http.MethodDelete:
		c.mock.ClearDeploymentFailures()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		return nil, apierr.New(apierr.MethodNotAllowed, "method %s is not allowed on %s", r.Method, failPath)
	}
	return nil, nil
}

// setFailure decodes and checks a POST /mock/fail body and applies it.
func (c *control) setFailure(w http.ResponseWriter, r *http.Request) (failView, error) {
	req, err := decodeFail(w, r)
	if err != nil {
		return failView{}, err
	}
	f := modes[req.Mode]
	if f == mockupstream.FailNone {
		c.mock.ClearDeploymentFailure(req.Deployment)
		return failView{Deployment: req.Deployment, Mode: modeNone}, nil
	}
	until := c.now().Add(time.Duration(*req.ForSeconds) * time.Second).Truncate(time.Second)
	c.mock.SetDeploymentFailure(req.Deployment, f, until)
	return viewOf(mockupstream.DeploymentFailure{Deployment: req.Deployment, Failure: f, Until: until}), nil
}

// decodeBody reads into v one JSON object of at most maxControlBody bytes, with no
// unknown field; example is a valid body, for the error of an empty one. With secret,
// the error of a body that is not such an object names nothing from it (the JSON
// decoder's errors quote field names, which could be a key sent by mistake).
func decodeBody(w http.ResponseWriter, r *http.Request, v any, example string, secret bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("want a single JSON object")
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return apierr.New(apierr.BodyTooLarge, "the body exceeds %d bytes", maxControlBody)
	case errors.Is(err, io.EOF):
		return apierr.New(apierr.InvalidRequest, "the body must be a JSON object such as %s", example)
	case err != nil && secret:
		return apierr.New(apierr.InvalidRequest, "invalid body: want a JSON object such as %s, with no other field", example)
	case err != nil:
		return apierr.New(apierr.InvalidRequest, "invalid body: %v", err)
	}
	return nil
}

// decodeFail reads a POST /mock/fail body and checks every field, reporting every
// problem at once.
func decodeFail(w http.ResponseWriter, r *http.Request) (failRequest, error) {
	var req failRequest
	if err := decodeBody(w, r, &req, `{"deployment":"openai-eu","mode":"5xx","for_seconds":60}`, false); err != nil {
		return req, err
	}

	var problems []string
	switch {
	case req.Deployment == "":
		problems = append(problems, "deployment is required")
	case !deploymentName.MatchString(req.Deployment):
		problems = append(problems, "deployment must be "+deploymentFormat)
	}
	_, known := modes[req.Mode]
	switch {
	case req.Mode == "":
		problems = append(problems, "mode is required: "+modeList)
	case !known:
		problems = append(problems, fmt.Sprintf("mode %q is unknown: want %s", req.Mode, modeList))
	}
	if req.Mode != modeNone {
		switch {
		case req.ForSeconds == nil:
			problems = append(problems, "for_seconds is required")
		case *req.ForSeconds <= 0 || *req.ForSeconds > maxFailSeconds:
			problems = append(problems, fmt.Sprintf("for_seconds must be between 1 and %d, not %d", maxFailSeconds, *req.ForSeconds))
		}
	}
	if len(problems) > 0 {
		return req, apierr.New(apierr.InvalidRequest, "%s", strings.Join(problems, "; "))
	}
	return req, nil
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// requestView is one recorded request as GET /mock/requests shows it: where it went
// and the texts it carried (what left the gateway, for a look at its guardrails).
type requestView struct {
	At         string   `json:"at"`
	Path       string   `json:"path"`
	Deployment string   `json:"deployment"`
	Model      string   `json:"model"`
	Stream     bool     `json:"stream"`
	Texts      []string `json:"texts"`
}

// serveRequests answers GET /mock/requests[?limit=N]: the last N (default 10)
// requests the mock recorded, newest last.
func (c *control) serveRequests(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return apierr.New(apierr.MethodNotAllowed, "use GET on %s", requestsPath)
	}
	limit := 10
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return apierr.New(apierr.InvalidRequest, "limit must be from 1 to 1000")
		}
		limit = n
	}
	reqs := c.mock.Requests()
	reqs = reqs[max(0, len(reqs)-limit):]
	out := make([]requestView, 0, len(reqs))
	for _, q := range reqs {
		texts := q.Texts
		if texts == nil {
			texts = []string{}
		}
		out = append(out, requestView{At: q.At.UTC().Format(time.RFC3339Nano), Path: q.Path, Deployment: q.Deployment,
			Model: q.Model, Stream: q.Stream, Texts: texts})
	}
	writeJSON(w, http.StatusOK, map[string]any{"requests": out})
	return nil
}
