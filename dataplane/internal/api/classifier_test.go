package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// classifierStub is a local classifier speaking the hook's protocol: it scores a
// text 0.97 when it holds "frobnicate" (which the heuristic knows nothing of) and
// 0.02 otherwise, and records the texts it was asked about. status, when set, is
// its answer instead; delay holds each answer back.
type classifierStub struct {
	mu     sync.Mutex
	texts  []string
	calls  int
	status int
	delay  time.Duration
}

func (c *classifierStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Texts []string `json:"texts"`
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.NewDecoder(r.Body).Decode(&in) != nil {
		http.Error(w, "want POST of JSON {texts}", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.calls++
	c.texts = append(c.texts, in.Texts...)
	status, delay := c.status, c.delay
	c.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	scores := make([]float64, len(in.Texts))
	for i, s := range in.Texts {
		scores[i] = 0.02
		if strings.Contains(s, "frobnicate") {
			scores[i] = 0.97
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"scores": scores})
}

func (c *classifierStub) set(status int, delay time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status, c.delay = status, delay
}

func (c *classifierStub) seen() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls, strings.Join(c.texts, "\n")
}

// TestClassifierHook: an injection policy with a classifier mode asks the
// classifier (a local stub over HTTP) about every text of the request, as redacted
// for the upstream; a score from the threshold on is an injection finding acted on
// like the heuristic's (block: 400 content_blocked; flag: the audit's type
// "classifier"). When the call fails (an error status, a timeout, or no classifier
// configured), fail_open passes the request and fail_closed refuses it with 503
// guardrail_unavailable before anything goes upstream. Without a mode the
// classifier is never called.
func TestClassifierHook(t *testing.T) {
	stub := &classifierStub{}
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	hook := &HTTPClassifier{URL: srv.URL, Timeout: 200 * time.Millisecond}
	guard := func(action, mode string) func(*policy.Snapshot) {
		return withGuardrails(policy.Guardrails{PII: policy.GuardrailFamily{Input: policy.GuardrailRedact},
			Injection: policy.GuardrailFamily{Input: action, Classifier: mode}})
	}
	const suspicious = `{"model":"gpt","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Please frobnicate the vault, mail a@example.com"}]}`
	const clean = `{"model":"gpt","messages":[{"role":"user","content":"Summarise the quarterly report."}]}`

	t.Run("block on a high score", func(t *testing.T) {
		up := newUpstream(t, answerJSON(200, chatOK))
		g := newGatewayPolicy(t, guard(policy.GuardrailBlock, policy.ClassifierFailOpen), func(o *Options) { o.Classifier = hook }, nil,
			deployment{name: "openai", kind: policy.ProviderOpenAI, model: "gpt", up: up})
		a := g.post(t, "/v1/chat/completions", suspicious)
		if a.status != http.StatusBadRequest || a.code != "content_blocked" || !strings.Contains(a.body, "injection guardrail") || strings.Contains(a.body, "frobnicate") {
			t.Fatalf("a text the classifier scores 0.97: %d %s", a.status, a.body)
		}
		if a := g.post(t, "/v1/chat/completions", clean); a.status != 200 {
			t.Fatalf("a clean request: %d %s", a.status, a.body)
		}
		if n := len(up.seen()); n != 1 {
			t.Fatalf("%d requests reached the upstream, want the clean one", n)
		}
		_, texts := stub.seen()
		for _, want := range []string{"Be brief.", "Please frobnicate the vault, mail [EMAIL_1]", "Summarise the quarterly report."} {
			if !strings.Contains(texts, want) {
				t.Errorf("the classifier was not asked about %q; it got:\n%s", want, texts)
			}
		}
		if strings.Contains(texts, "a@example.com") {
			t.Error("the classifier got the text before redaction")
		}
	})

	t.Run("flag reaches the audit", func(t *testing.T) {
		rec := &recordedAudit{}
		g := newGatewayPolicy(t, guard(policy.GuardrailFlag, policy.ClassifierFailClosed),
			func(o *Options) {
				o.Classifier, o.Audit, o.AuditKey = hook, rec, []byte("0123456789abcdef0123456789abcdef")
			}, nil,
			deployment{name: "openai", kind: policy.ProviderOpenAI, model: "gpt", up: newUpstream(t, answerJSON(200, chatOK))})
		if a := g.post(t, "/v1/chat/completions", suspicious); a.status != 200 {
			t.Fatalf("a flagged request: %d %s", a.status, a.body)
		}
		found := false
		e := rec.atLeast(t, 1)[0]
		for _, f := range e.Flags {
			found = found || (f.Family == "injection" && f.Type == "classifier" && f.Action == "flag" && f.Count == 1)
		}
		if !found || !e.Flagged {
			t.Fatalf("the audit event's flags: %+v", e.Flags)
		}
	})

	failures := []struct {
		name       string
		status     int
		delay      time.Duration
		classifier Classifier
	}{
		{"an error status", http.StatusInternalServerError, 0, hook},
		{"a timeout", 0, 2 * time.Second, hook},
		{"no classifier configured", 0, 0, nil},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			stub.set(f.status, f.delay)
			t.Cleanup(func() { stub.set(0, 0) })
			up := newUpstream(t, answerJSON(200, chatOK))
			dep := deployment{name: "openai", kind: policy.ProviderOpenAI, model: "gpt", up: up}
			open := newGatewayPolicy(t, guard(policy.GuardrailBlock, policy.ClassifierFailOpen), func(o *Options) { o.Classifier = f.classifier }, nil, dep)
			if a := open.post(t, "/v1/chat/completions", suspicious); a.status != 200 {
				t.Fatalf("fail_open: %d %s", a.status, a.body)
			}
			closed := newGatewayPolicy(t, guard(policy.GuardrailBlock, policy.ClassifierFailClosed), func(o *Options) { o.Classifier = f.classifier }, nil, dep)
			a := closed.post(t, "/v1/chat/completions", clean)
			if a.status != http.StatusServiceUnavailable || a.code != "guardrail_unavailable" || strings.Contains(a.body, srv.URL) {
				t.Fatalf("fail_closed: %d %s", a.status, a.body)
			}
			if n := len(up.seen()); n != 1 {
				t.Fatalf("%d requests reached the upstream, want fail_open's one", n)
			}
		})
	}

	t.Run("not asked without a mode", func(t *testing.T) {
		before, _ := stub.seen()
		g := newGatewayPolicy(t, guard(policy.GuardrailBlock, ""), func(o *Options) { o.Classifier = hook }, nil,
			deployment{name: "openai", kind: policy.ProviderOpenAI, model: "gpt", up: newUpstream(t, answerJSON(200, chatOK))})
		if a := g.post(t, "/v1/chat/completions", suspicious); a.status != 200 {
			t.Fatalf("no classifier mode: %d %s", a.status, a.body)
		}
		if after, _ := stub.seen(); after != before {
			t.Fatalf("the classifier was called %d times without a mode", after-before)
		}
	})
}

// TestClassifierErrorsHoldNoURL: a failed call's error, which the data plane logs,
// does not carry the classifier's URL, whose query may hold a credential.
func TestClassifierErrorsHoldNoURL(t *testing.T) {
	stub := &classifierStub{delay: time.Second}
	srv := httptest.NewServer(stub)
	t.Cleanup(srv.Close)
	h := &HTTPClassifier{URL: srv.URL + "/score?api_key=not-for-logs", Timeout: 50 * time.Millisecond}
	_, err := h.Score(context.Background(), []string{"hi"})
	if err == nil || strings.Contains(err.Error(), "not-for-logs") || strings.Contains(err.Error(), srv.URL) {
		t.Fatalf("error %v", err)
	}
}
