package app_test

import (
	"io"
	"net/http"
	"regexp"
	"testing"

	"github.com/portcullis-gw/portcullis/shared/apierr"
)

func TestRateLimitHeadersAndOutputBudget(t *testing.T) {
	e := newEnv(t, envOptions{region: "eu"})
	s := e.snapshot()
	for i := range s.Tiers {
		if s.Tiers[i].Name == "tier_premium" {
			s.Tiers[i].TokensPerHour, s.Tiers[i].DefaultMaxTokens = 10000, 0
		}
	}
	e.publish(t, s)
	premium, euApp := e.token(t, "premium-app"), e.token(t, "eu-app")
	reset := regexp.MustCompile(`^([0-9]+m)?[0-9]+s$|^[0-9]+ms$`)

	tests := []struct {
		name       string
		token      string
		body       string
		wantTokens bool           // the tier has a token limit: headers and an output budget
		wantSent   map[string]any // members the upstream must have received (nil: must be absent)
	}{
		// First: the clamped request needs the whole hourly budget.
		{name: "max_tokens beyond the hourly budget is clamped", token: premium, wantTokens: true,
			body:     `{"model":"gpt-4o","max_tokens":50000,"messages":[{"role":"user","content":"hi"}]}`,
			wantSent: map[string]any{"max_tokens": float64(10000 - 3 - 1 - 1 - 3)}},
		{name: "no max_tokens gets the default budget", token: premium, wantTokens: true,
			body:     `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
			wantSent: map[string]any{"max_tokens": float64(4096), "max_completion_tokens": nil}},
		{name: "max_completion_tokens is kept", token: premium, wantTokens: true,
			body:     `{"model":"gpt-4o","max_completion_tokens":10,"messages":[{"role":"user","content":"hi"}]}`,
			wantSent: map[string]any{"max_completion_tokens": float64(10), "max_tokens": nil}},
		{name: "both caps set: both get the smaller", token: premium, wantTokens: true,
			body:     `{"model":"gpt-4o","max_completion_tokens":30,"max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`,
			wantSent: map[string]any{"max_completion_tokens": float64(20), "max_tokens": float64(20)}},
		{name: "no token limit: the request is left alone", token: euApp,
			body:     `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`,
			wantSent: map[string]any{"max_tokens": nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(t, http.MethodPost, "/v1/chat/completions", tt.token, tt.body, nil)
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, raw)
			}
			h := resp.Header
			if h.Get("X-Ratelimit-Limit-Requests") == "" || h.Get("X-Ratelimit-Remaining-Requests") == "" || !reset.MatchString(h.Get("X-Ratelimit-Reset-Requests")) {
				t.Fatalf("request headers: limit %q remaining %q reset %q", h.Get("X-Ratelimit-Limit-Requests"),
					h.Get("X-Ratelimit-Remaining-Requests"), h.Get("X-Ratelimit-Reset-Requests"))
			}
			if got := h.Get("X-Ratelimit-Limit-Tokens") == "10000" && reset.MatchString(h.Get("X-Ratelimit-Reset-Tokens")); got != tt.wantTokens {
				t.Fatalf("token headers: limit %q reset %q, want present %v", h.Get("X-Ratelimit-Limit-Tokens"), h.Get("X-Ratelimit-Reset-Tokens"), tt.wantTokens)
			}
			seen := e.spies["eu"].seen()
			sent := seen[len(seen)-1].Body
			for k, want := range tt.wantSent {
				if got, ok := sent[k]; (want == nil && ok) || (want != nil && got != want) {
					t.Errorf("upstream got %s = %v, want %v", k, got, want)
				}
			}
		})
	}

	t.Run("a bad max_tokens is a 400", func(t *testing.T) {
		resp := e.do(t, http.MethodPost, "/v1/chat/completions", premium, `{"model":"gpt-4o","max_tokens":"many","messages":[]}`, nil)
		if got := openAIError(t, resp, http.StatusBadRequest, apierr.InvalidRequest); got.Param == nil || *got.Param != "max_tokens" {
			t.Fatalf("param %v, want max_tokens", got.Param)
		}
	})
	t.Run("streams ask the upstream for usage", func(t *testing.T) {
		resp := e.do(t, http.MethodPost, "/v1/chat/completions", premium,
			`{"model":"gpt-4o","stream":true,"stream_options":{"x":1},"messages":[{"role":"user","content":"hi"}]}`, nil)
		_, _ = io.ReadAll(resp.Body)
		seen := e.spies["eu"].seen()
		so, _ := seen[len(seen)-1].Body["stream_options"].(map[string]any)
		if so["include_usage"] != true || so["x"] != float64(1) {
			t.Fatalf("upstream got stream_options %v, want include_usage added to the client's", so)
		}
	})
	t.Run("a bad stream_options is a 400", func(t *testing.T) {
		resp := e.do(t, http.MethodPost, "/v1/chat/completions", premium,
			`{"model":"gpt-4o","stream":true,"stream_options":"yes","messages":[]}`, nil)
		openAIError(t, resp, http.StatusBadRequest, apierr.InvalidRequest)
	})
}

func TestRequestsPerMinuteRefusal(t *testing.T) {
	e := newEnv(t, envOptions{region: "eu"})
	s := e.snapshot()
	for i := range s.Tiers {
		s.Tiers[i].RequestsPerMinute = 2
	}
	e.publish(t, s)
	token := e.token(t, "eu-app")
	for range 2 {
		if resp := e.chat(t, token, "gpt-4o-mini"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	resp := e.chat(t, token, "gpt-4o-mini")
	got := openAIError(t, resp, http.StatusTooManyRequests, apierr.RateLimited)
	if got.Type != "requests" {
		t.Fatalf("type %q, want requests", got.Type)
	}
	if resp.Header.Get("Retry-After") == "" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Fatalf("Retry-After %q, remaining %q", resp.Header.Get("Retry-After"), resp.Header.Get("X-Ratelimit-Remaining-Requests"))
	}
}
