package mockupstream_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/waitfor"
	"github.com/portcullis-gw/portcullis/tests/mockupstream"
)

const (
	chatBody   = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
	streamBody = `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
)

// freshClient returns a client that never reuses a connection a failure may have broken.
func freshClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

func post(ctx context.Context, url, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return freshClient().Do(req)
}

func TestFailureStatus(t *testing.T) {
	tests := []struct {
		name           string
		failure        mockupstream.Failure
		wantStatus     int
		wantType       string
		wantRetryAfter string
	}{
		{name: "500", failure: mockupstream.Fail500, wantStatus: 500, wantType: "server_error"},
		{name: "429", failure: mockupstream.Fail429, wantStatus: 429, wantType: "requests", wantRetryAfter: "1"},
		{name: "529", failure: mockupstream.Fail529, wantStatus: 529, wantType: "server_error"},
	}
	for _, tc := range tests {
		for _, path := range []string{"/v1/chat/completions", "/v1/embeddings"} {
			t.Run(tc.name+path, func(t *testing.T) {
				m, url := start(t, mockupstream.Options{})
				m.SetFailure(tc.failure)
				resp, body := call(t, http.MethodPost, url+path, `{"model":"m","input":"x","messages":[{"role":"user","content":"x"}]}`, nil)
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
				}
				if got := decodeJSON[openAIError](t, body); got.Error == nil || got.Error.Type != tc.wantType {
					t.Errorf("body %s, want type %q", body, tc.wantType)
				}
				if got := resp.Header.Get("Retry-After"); got != tc.wantRetryAfter {
					t.Errorf("Retry-After %q, want %q", got, tc.wantRetryAfter)
				}
				if n := len(m.Requests()); n != 1 {
					t.Errorf("%d requests recorded, want 1", n)
				}

				m.SetFailure(mockupstream.FailNone)
				if resp, body := call(t, http.MethodPost, url+path, `{"model":"m","input":"x","messages":[{"role":"user","content":"x"}]}`, nil); resp.StatusCode != 200 {
					t.Errorf("after FailNone: status %d: %s", resp.StatusCode, body)
				}
			})
		}
	}
}

func TestFailSlow(t *testing.T) {
	t.Run("answers after the delay", func(t *testing.T) {
		m, url := start(t, mockupstream.Options{SlowDelay: 50 * time.Millisecond})
		m.SetFailure(mockupstream.FailSlow)
		resp, body := call(t, http.MethodPost, url+"/v1/chat/completions", chatBody, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "mock reply from mock to 1 messages") {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("gives up when the client does", func(t *testing.T) {
		// With an hour's delay, the server's Close in t.Cleanup would hang (and the test
		// time out) unless the handler returns when the client's context ends.
		m, url := start(t, mockupstream.Options{SlowDelay: time.Hour})
		m.SetFailure(mockupstream.FailSlow)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			resp, err := post(ctx, url+"/v1/chat/completions", chatBody)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		waitfor.That(t, "the mock's state", func() bool { return len(m.Requests()) == 1 })
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	})
}

func TestFailReset(t *testing.T) {
	for _, body := range []string{chatBody, streamBody} {
		m, url := start(t, mockupstream.Options{})
		m.SetFailure(mockupstream.FailReset)
		resp, err := post(context.Background(), url+"/v1/chat/completions", body)
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got status %d, want a connection error", resp.StatusCode)
		}
	}
}

func TestFailCutStream(t *testing.T) {
	t.Run("stream", func(t *testing.T) {
		m, url := start(t, mockupstream.Options{})
		m.SetFailure(mockupstream.FailCutStream)
		resp, err := post(context.Background(), url+"/v1/chat/completions", streamBody)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		events, err := sseEvents(resp.Body)
		if len(events) != 2 {
			t.Errorf("%d events before the cut, want 2: %q", len(events), events)
		}
		for _, ev := range events {
			if ev == "[DONE]" {
				t.Error("cut stream sent [DONE]")
			}
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("read error %v, want unexpected EOF", err)
		}
	})
	t.Run("non-stream", func(t *testing.T) {
		m, url := start(t, mockupstream.Options{})
		m.SetFailure(mockupstream.FailCutStream)
		resp, err := post(context.Background(), url+"/v1/chat/completions", chatBody)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if _, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("read error %v, want unexpected EOF", err)
		}
	})
}

func TestResetClearsFailure(t *testing.T) {
	m, url := start(t, mockupstream.Options{})
	m.SetFailure(mockupstream.Fail500)
	m.Reset()
	if resp, body := call(t, http.MethodPost, url+"/v1/chat/completions", chatBody, nil); resp.StatusCode != 200 {
		t.Fatalf("status %d after Reset: %s", resp.StatusCode, body)
	}
}
