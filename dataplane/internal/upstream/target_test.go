package upstream_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/testcerts"
)

type seen struct {
	mu        sync.Mutex
	path      string
	auth      string
	requestID string
	body      string
}

func recorder(t *testing.T, s *seen) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read body: %v", err)
		}
		s.mu.Lock()
		s.path, s.auth, s.requestID, s.body = r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("X-Request-Id"), string(b)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}
}

func deployment(base string) policy.Deployment {
	return policy.Deployment{Name: "d1", Provider: "p", Region: "eu", Kind: policy.KindCloud, BaseURL: base,
		KeySource: policy.KeySourceNone, TLS: policy.TLS{Verify: true}, TimeoutSeconds: 5, Enabled: true}
}

func TestAnthropicKeyHeaders(t *testing.T) {
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
	}))
	t.Cleanup(srv.Close)
	keyPath := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyPath, []byte("test-anthropic-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := deployment(srv.URL)
	d.KeySource, d.KeyPath = policy.KeySourceFile, keyPath
	target, err := upstream.New(d, upstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(target.CloseIdle)
	resp, _, err := target.Send(context.Background(), upstream.Call{Path: upstream.PathMessages, Body: []byte(`{}`), Key: upstream.AnthropicKey})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Get("X-Api-Key") != "test-anthropic-key" || got.Get("Anthropic-Version") != upstream.AnthropicVersion || got.Get("Authorization") != "" {
		t.Fatalf("headers: x-api-key set %v, anthropic-version %q, authorization set %v",
			got.Get("X-Api-Key") != "", got.Get("Anthropic-Version"), got.Get("Authorization") != "")
	}
}

func TestSendForwardsKeyAndRequestID(t *testing.T) {
	var s seen
	srv := httptest.NewServer(recorder(t, &s))
	t.Cleanup(srv.Close)
	keyPath := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyPath, []byte("test-upstream-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		base     string
		source   string
		wantAuth string
	}{
		{name: "file key", base: srv.URL, source: policy.KeySourceFile, wantAuth: "Bearer test-upstream-key"},
		{name: "no key", base: srv.URL + "/", source: policy.KeySourceNone, wantAuth: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deployment(tt.base)
			d.KeySource, d.KeyPath = tt.source, keyPath
			target, err := upstream.New(d, upstream.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(target.CloseIdle)
			resp, _, err := target.Send(context.Background(), upstream.Call{Path: upstream.PathChatCompletions, Body: []byte(`{"model":"m"}`), RequestID: "req-1"})
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			resp.Body.Close()
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.path != "/v1/chat/completions" || s.auth != tt.wantAuth || s.requestID != "req-1" || s.body != `{"model":"m"}` {
				t.Fatalf("upstream saw path=%q auth=%q request_id=%q body=%q", s.path, s.auth, s.requestID, s.body)
			}
		})
	}
}

func TestSendErrors(t *testing.T) {
	release := make(chan struct{})
	blocking := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client hanging up
		select {                           // never answers; the transport's header timeout must fire
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(blocking.Close)
	t.Cleanup(func() { close(release) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name     string
		mutate   func(*policy.Deployment)
		wantCode apierr.Code
	}{
		{name: "vault key source is not available yet", mutate: func(d *policy.Deployment) { d.KeySource = policy.KeySourceVault }, wantCode: apierr.UpstreamKey},
		{name: "env key source is refused", mutate: func(d *policy.Deployment) { d.KeySource = policy.KeySourceEnv }, wantCode: apierr.UpstreamKey},
		{name: "missing key file", mutate: func(d *policy.Deployment) {
			d.KeySource, d.KeyPath = policy.KeySourceFile, filepath.Join(t.TempDir(), "none")
		}, wantCode: apierr.UpstreamKey},
		{name: "response header timeout", mutate: func(d *policy.Deployment) { d.BaseURL, d.TimeoutSeconds = blocking.URL, 1 }, wantCode: apierr.UpstreamTimeout},
		{name: "connection refused", mutate: func(d *policy.Deployment) { d.BaseURL = closedURL }, wantCode: apierr.UpstreamError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deployment(blocking.URL)
			if tt.mutate != nil {
				tt.mutate(&d)
			}
			target, err := upstream.New(d, upstream.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(target.CloseIdle)
			resp, _, err := target.Send(context.Background(), upstream.Call{Path: upstream.PathEmbeddings, Body: []byte(`{}`)})
			if err == nil {
				resp.Body.Close()
				t.Fatal("Send succeeded, want an error")
			}
			var e *apierr.Error
			if !errors.As(err, &e) || e.Code != tt.wantCode {
				t.Fatalf("Send error = %v, want code %s", err, tt.wantCode)
			}
		})
	}
}

func TestTLSPolicy(t *testing.T) {
	var s seen
	srv := httptest.NewTLSServer(recorder(t, &s))
	t.Cleanup(srv.Close)
	// A server that speaks at most TLS 1.2, with the same certificate.
	old := httptest.NewUnstartedServer(recorder(t, &s))
	old.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	old.StartTLS()
	t.Cleanup(old.Close)
	cert := srv.Certificate()
	dir := t.TempDir()
	caFile := writePEM(t, filepath.Join(dir, "ca.pem"), cert.Raw)
	wrongCAFile := testcerts.NewCA(t).WritePEM(t)
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	goodPin := base64.StdEncoding.EncodeToString(spki[:])
	otherPin := base64.StdEncoding.EncodeToString(make([]byte, 32))

	tests := []struct {
		name      string
		url       string // default srv.URL
		tls       policy.TLS
		insecure  bool        // upstream.Options.AllowInsecureTLS
		wantCode  apierr.Code // "" for success
		wantAlert bool        // an alert-worthy log line
	}{
		{name: "unknown authority is refused", tls: policy.TLS{Verify: true}, wantCode: apierr.UpstreamTLS},
		{name: "wrong CA is refused", tls: policy.TLS{Verify: true, CAFile: wrongCAFile}, wantCode: apierr.UpstreamTLS},
		{name: "trusted via ca_file", tls: policy.TLS{Verify: true, CAFile: caFile}},
		{name: "trusted via ca_file with TLS 1.3 minimum", tls: policy.TLS{Verify: true, CAFile: caFile, MinVersion: "TLS1.3"}},
		{name: "TLS 1.2-only server under a TLS 1.3 minimum is refused", url: old.URL,
			tls: policy.TLS{Verify: true, CAFile: caFile, MinVersion: "TLS1.3"}, wantCode: apierr.UpstreamTLS},
		{name: "TLS 1.2-only server under the default minimum", url: old.URL, tls: policy.TLS{Verify: true, CAFile: caFile}},
		{name: "matching pin among several", tls: policy.TLS{Verify: true, CAFile: caFile, PinSHA256: []string{otherPin, goodPin}}},
		{name: "pin mismatch is refused and alerted", tls: policy.TLS{Verify: true, CAFile: caFile, PinSHA256: []string{otherPin}},
			wantCode: apierr.UpstreamTLS, wantAlert: true},
		{name: "verify off with the dev flag", tls: policy.TLS{Verify: false}, insecure: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := tt.url
			if url == "" {
				url = srv.URL
			}
			d := deployment(url)
			d.TLS = tt.tls
			var logs logtest.Buffer
			target, err := upstream.New(d, upstream.Options{
				AllowInsecureTLS: tt.insecure, Log: logging.New(&logs, "debug")})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(target.CloseIdle)
			resp, _, err := target.Send(context.Background(), upstream.Call{Path: upstream.PathChatCompletions, Body: []byte(`{}`)})
			if resp != nil {
				resp.Body.Close()
			}
			var e *apierr.Error
			switch {
			case tt.wantCode == "" && err != nil:
				t.Fatalf("Send error = %v, want success", err)
			case tt.wantCode != "" && (!errors.As(err, &e) || e.Code != tt.wantCode):
				t.Fatalf("Send error = %v, want code %s", err, tt.wantCode)
			}
			if got := strings.Contains(logs.String(), `"alert":"tls_pin_mismatch"`); got != tt.wantAlert {
				t.Fatalf("alert log line present %v, want %v: %s", got, tt.wantAlert, logs.String())
			}
		})
	}
}

func TestVerifyOffIsRefusedWithoutTheDevFlag(t *testing.T) {
	d := deployment("https://127.0.0.1:1")
	d.TLS.Verify = false
	if _, err := upstream.New(d, upstream.Options{}); err == nil || !strings.Contains(err.Error(), "PORTCULLIS_DEV_ALLOW_INSECURE_TLS") {
		t.Fatalf("New = %v, want a refusal naming the dev flag", err)
	}
}

func writePEM(t *testing.T, path string, der []byte) string {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNewRejectsBadSettings(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*policy.Deployment)
	}{
		{name: "relative base url", mutate: func(d *policy.Deployment) { d.BaseURL = "/v1" }},
		{name: "ftp base url", mutate: func(d *policy.Deployment) { d.BaseURL = "ftp://example.test" }},
		{name: "TLS 1.1", mutate: func(d *policy.Deployment) { d.TLS.MinVersion = "TLS1.1" }},
		{name: "bad pin", mutate: func(d *policy.Deployment) { d.TLS.PinSHA256 = []string{"abc123"} }},
		{name: "missing ca file", mutate: func(d *policy.Deployment) { d.TLS.CAFile = filepath.Join(t.TempDir(), "none.pem") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deployment("https://127.0.0.1:1")
			tt.mutate(&d)
			if _, err := upstream.New(d, upstream.Options{}); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}
