package upstream_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/upstream"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/policy"
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
			target, err := upstream.New(d, policy.ProviderOpenAI)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(target.CloseIdle)
			resp, err := target.Send(context.Background(), upstream.PathChatCompletions, []byte(`{"model":"m"}`), "req-1")
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
		kind     string
		wantCode apierr.Code
	}{
		{name: "vault key source is not available yet", mutate: func(d *policy.Deployment) { d.KeySource = policy.KeySourceVault }, kind: policy.ProviderOpenAI, wantCode: apierr.UpstreamKey},
		{name: "env key source is refused", mutate: func(d *policy.Deployment) { d.KeySource = policy.KeySourceEnv }, kind: policy.ProviderOpenAI, wantCode: apierr.UpstreamKey},
		{name: "missing key file", mutate: func(d *policy.Deployment) {
			d.KeySource, d.KeyPath = policy.KeySourceFile, filepath.Join(t.TempDir(), "none")
		}, kind: policy.ProviderOpenAI, wantCode: apierr.UpstreamKey},
		{name: "anthropic arrives later", kind: policy.ProviderAnthropic, wantCode: apierr.UpstreamUnavailable},
		{name: "response header timeout", mutate: func(d *policy.Deployment) { d.BaseURL, d.TimeoutSeconds = blocking.URL, 1 }, kind: policy.ProviderOpenAI, wantCode: apierr.UpstreamTimeout},
		{name: "connection refused", mutate: func(d *policy.Deployment) { d.BaseURL = closedURL }, kind: policy.ProviderOllama, wantCode: apierr.UpstreamError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deployment(blocking.URL)
			if tt.mutate != nil {
				tt.mutate(&d)
			}
			target, err := upstream.New(d, tt.kind)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(target.CloseIdle)
			resp, err := target.Send(context.Background(), upstream.PathEmbeddings, []byte(`{}`), "")
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
	cert := srv.Certificate()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	goodPin := base64.StdEncoding.EncodeToString(spki[:])
	otherPin := base64.StdEncoding.EncodeToString(make([]byte, 32))

	tests := []struct {
		name   string
		tls    policy.TLS
		wantOK bool
	}{
		{name: "unknown authority is refused", tls: policy.TLS{Verify: true}, wantOK: false},
		{name: "trusted via ca_file", tls: policy.TLS{Verify: true, CAFile: caFile}, wantOK: true},
		{name: "trusted via ca_file with TLS 1.3 minimum", tls: policy.TLS{Verify: true, CAFile: caFile, MinVersion: "TLS1.3"}, wantOK: true},
		{name: "matching pin", tls: policy.TLS{Verify: true, CAFile: caFile, PinSHA256: []string{otherPin, goodPin}}, wantOK: true},
		{name: "pin mismatch is refused", tls: policy.TLS{Verify: true, CAFile: caFile, PinSHA256: []string{otherPin}}, wantOK: false},
		{name: "verify off", tls: policy.TLS{Verify: false}, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := deployment(srv.URL)
			d.TLS = tt.tls
			target, err := upstream.New(d, policy.ProviderOpenAI)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(target.CloseIdle)
			resp, err := target.Send(context.Background(), upstream.PathChatCompletions, []byte(`{}`), "")
			if resp != nil {
				resp.Body.Close()
			}
			if (err == nil) != tt.wantOK {
				t.Fatalf("Send error = %v, want success %v", err, tt.wantOK)
			}
		})
	}
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
			if _, err := upstream.New(d, policy.ProviderOpenAI); err == nil {
				t.Fatal("New succeeded, want an error")
			}
		})
	}
}
