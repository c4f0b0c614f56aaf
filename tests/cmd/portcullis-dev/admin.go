package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"
)

// adminClient calls the control plane's admin API. It never shows its token.
type adminClient struct {
	url   string // base URL, http://host:port
	token string
	http  *http.Client
}

func newAdminClient(url, token string) *adminClient {
	return &adminClient{url: strings.TrimRight(url, "/"), token: token, http: &http.Client{Timeout: 30 * time.Second}}
}

// adminResponse is one answer of the admin API.
type adminResponse struct {
	status int
	header http.Header
	body   []byte
}

// call sends body (JSON, when not nil) to path under /admin/v1 and returns the
// answer; an answer other than 2xx is an error that quotes the body, which the admin
// API keeps free of secrets.
func (c *adminClient) call(ctx context.Context, method, path string, body any, header map[string]string) (adminResponse, error) {
	resp, err := c.try(ctx, method, path, body, header)
	if err == nil && resp.status/100 != 2 {
		err = fmt.Errorf("%s %s: status %d: %s", method, path, resp.status, bytes.TrimSpace(resp.body))
	}
	return resp, err
}

// try is call that returns any answer without an error.
func (c *adminClient) try(ctx context.Context, method, path string, body any, header map[string]string) (adminResponse, error) {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return adminResponse{}, err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+"/admin/v1"+path, rd)
	if err != nil {
		return adminResponse{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return adminResponse{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return adminResponse{}, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	return adminResponse{status: resp.StatusCode, header: resp.Header, body: raw}, nil
}

// works reports whether the control plane accepts the token.
func (c *adminClient) works(ctx context.Context) bool {
	resp, err := c.try(ctx, http.MethodGet, "/tenants?limit=1", nil, nil)
	return err == nil && resp.status == http.StatusOK
}

// mint asks the dev issuer for a token for client.
func (c *adminClient) mint(ctx context.Context, client string) (string, error) {
	resp, err := c.call(ctx, http.MethodPost, "/tokens", map[string]any{"client_id": client}, nil)
	if err != nil {
		return "", fmt.Errorf("mint a token for %s: %w", client, err)
	}
	var minted struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(resp.body, &minted); err != nil || strings.Count(minted.Token, ".") != 2 {
		return "", fmt.Errorf("mint a token for %s: the answer holds no token", client)
	}
	return minted.Token, nil
}

// reconcile makes the existing item at path carry every field of want, patching it
// with its current ETag only when some field differs. It reports whether it patched.
func (c *adminClient) reconcile(ctx context.Context, path string, want map[string]any) (bool, error) {
	cur, err := c.call(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return false, err
	}
	var have map[string]any
	if err := json.Unmarshal(cur.body, &have); err != nil {
		return false, fmt.Errorf("GET %s: decode: %w", path, err)
	}
	// Compare in JSON's terms: numbers are float64 on both sides.
	raw, err := json.Marshal(want)
	if err != nil {
		return false, err
	}
	var desired map[string]any
	if err := json.Unmarshal(raw, &desired); err != nil {
		return false, err
	}
	same := true
	for k, v := range desired {
		if !reflect.DeepEqual(have[k], v) {
			same = false
			break
		}
	}
	if same {
		return false, nil
	}
	_, err = c.call(ctx, http.MethodPatch, path, want, map[string]string{"If-Match": cur.header.Get("ETag")})
	return err == nil, err
}
