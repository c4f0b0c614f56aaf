package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

const (
	adminPrefix     = "/admin/v1"
	requestTimeout  = 30 * time.Second
	maxResponseBody = 64 << 20
)

// client calls the admin API with the admin token. It is safe for concurrent use.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

func newClient(adminURL, token string) (*client, error) {
	u, err := url.Parse(strings.TrimRight(adminURL, "/"))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("admin URL %q: must be an http(s) URL such as http://127.0.0.1:8080", adminURL)
	}
	return &client{
		base:  u,
		token: token,
		http: &http.Client{
			Timeout: requestTimeout,
			// Never follow a redirect: the admin token stays with the configured host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// response is a completed admin API call with a 2xx status.
type response struct {
	status int
	header http.Header
	body   []byte
}

// APIError is a non-2xx answer of the admin API.
type APIError struct {
	Status  int
	Code    apierr.Code
	Message string
	Fields  []apierr.FieldError
}

func (e *APIError) Error() string {
	var b strings.Builder
	if e.Code != "" {
		fmt.Fprintf(&b, "%s: %s", e.Code, e.Message)
	} else {
		fmt.Fprintf(&b, "HTTP %d: %s", e.Status, e.Message)
	}
	for _, f := range e.Fields {
		fmt.Fprintf(&b, "\n  %s: %s", f.Field, f.Message)
	}
	return b.String()
}

// call sends method to the admin path (relative to /admin/v1) with an optional JSON
// body and extra headers. Any non-2xx status comes back as *APIError.
func (c *client) call(ctx context.Context, method, path string, body []byte, header map[string]string) (*response, error) {
	// path is already escaped (see itemPath) and may carry a query.
	target := c.base.String() + adminPrefix + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// The error names the URL only, never the Authorization header.
		return nil, fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read response: %w", method, req.URL.Path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, apiError(resp.StatusCode, data)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

func apiError(status int, data []byte) *APIError {
	var body apierr.AdminBody
	if err := json.Unmarshal(data, &body); err == nil && body.Error.Code != "" {
		return &APIError{Status: status, Code: body.Error.Code, Message: body.Error.Message, Fields: body.Error.Fields}
	}
	msg := strings.TrimSpace(string(data))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &APIError{Status: status, Message: msg}
}

// itemPath is the admin path of one item of a resource.
func itemPath(resource, key string) string { return "/" + resource + "/" + url.PathEscape(key) }
