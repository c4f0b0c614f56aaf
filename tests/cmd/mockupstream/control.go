package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

// Limits of the control API.
const (
	failPath         = "/mock/fail"
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
//
// It has no authentication: it must only listen on loopback. It logs one line per
// call, naming at most the deployment and the mode.
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
	var set *failView // the failure a POST set, for the log
	err := c.serve(sw, r, &set)
	if err != nil {
		e := apierr.From(err)
		writeJSON(sw, e.Status(), e.Admin())
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", sw.status}
	if set != nil {
		attrs = append(attrs, "deployment", set.Deployment, "mode", set.Mode)
	}
	c.log.Info("control", attrs...)
}

func (c *control) serve(w http.ResponseWriter, r *http.Request, set **failView) error {
	if r.URL.Path != failPath {
		return apierr.New(apierr.NotFound, "no such control endpoint; use %s", failPath)
	}
	switch r.Method {
	case http.MethodPost:
		v, err := c.setFailure(w, r)
		if err != nil {
			return err
		}
		*set = &v
		writeJSON(w, http.StatusOK, v)
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
		return apierr.New(apierr.MethodNotAllowed, "method %s is not allowed on %s", r.Method, failPath)
	}
	return nil
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

// decodeFail reads one JSON object of at most maxControlBody bytes and checks every
// field, reporting every problem at once.
func decodeFail(w http.ResponseWriter, r *http.Request) (failRequest, error) {
	var req failRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxControlBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil && dec.More() {
		err = errors.New("want a single JSON object")
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return req, apierr.New(apierr.BodyTooLarge, "the body exceeds %d bytes", maxControlBody)
	case errors.Is(err, io.EOF):
		return req, apierr.New(apierr.InvalidRequest, `the body must be a JSON object such as {"deployment":"openai-eu","mode":"5xx","for_seconds":60}`)
	case err != nil:
		return req, apierr.New(apierr.InvalidRequest, "invalid body: %v", err)
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
