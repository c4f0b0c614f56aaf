package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/policy"
	"github.com/portcullis-gw/portcullis/shared/signing"
	"github.com/portcullis-gw/portcullis/shared/waitfor"
)

func TestReadyzUntilTheFirstSnapshot(t *testing.T) {
	e := newEnv(t, envOptions{noBucket: true})
	if resp := e.do(t, http.MethodGet, "/healthz", "", "", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
	openAIError(t, e.do(t, http.MethodGet, "/readyz", "", "", nil), http.StatusServiceUnavailable, apierr.PolicyNotReady)
	openAIError(t, e.chat(t, e.token(t, "premium-app"), "gpt-4o"), http.StatusServiceUnavailable, apierr.PolicyNotReady)
	if e.app.PolicyVersion() != 0 {
		t.Fatalf("PolicyVersion = %d before any snapshot", e.app.PolicyVersion())
	}

	e.createBucket(t)
	e.publish(t, e.snapshot())
	// Ready once the limiter has found its buckets too (it polls for them).
	waitfor.That(t, "/readyz after the first snapshot and the limit buckets", func() bool {
		return e.do(t, http.MethodGet, "/readyz", "", "", nil).StatusCode == http.StatusOK
	})
	if resp := e.chat(t, e.token(t, "premium-app"), "gpt-4o"); resp.StatusCode != http.StatusOK {
		t.Fatalf("chat = %d after the first snapshot", resp.StatusCode)
	}
}

func TestReadyzWhileTheLimitBucketsAreMissing(t *testing.T) {
	e := newEnv(t, envOptions{noBucket: true})
	ctx := context.Background()
	var err error
	if e.kv, err = e.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: natsnames.PolicyBucket, History: 5}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, e.snapshot())
	// fail_closed: a limited client cannot be served, and the worker says so.
	openAIError(t, e.do(t, http.MethodGet, "/readyz", "", "", nil), http.StatusServiceUnavailable, apierr.LimitsUnavailable)
	openAIError(t, e.chat(t, e.token(t, "premium-app"), "gpt-4o"), http.StatusServiceUnavailable, apierr.LimitsUnavailable)
	e.createBucket(t)
	waitfor.That(t, "/readyz once the limit buckets exist", func() bool {
		return e.do(t, http.MethodGet, "/readyz", "", "", nil).StatusCode == http.StatusOK
	})
	if resp := e.chat(t, e.token(t, "premium-app"), "gpt-4o"); resp.StatusCode != http.StatusOK {
		t.Fatalf("chat = %d once the limit buckets exist", resp.StatusCode)
	}
}

// TestBadSnapshotsKeepServingTheLastGoodOne: a snapshot that is unsigned, signed by
// a key the worker does not trust, undecodable or of an unknown schema is refused
// and counted by reason, and the last good policy keeps serving; so is one older
// than the policy in use.
func TestBadSnapshotsKeepServingTheLastGoodOne(t *testing.T) {
	e := newEnv(t, envOptions{})
	good := e.app.PolicyVersion()
	encode := func(change func(*policy.Snapshot)) []byte {
		s := e.snapshot()
		s.Version = good + 10
		change(s)
		b, err := policy.Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A forger with write access to PC_POLICY but no signing key: every client
	// disabled, at a version no real snapshot would ever pass.
	forged := encode(func(s *policy.Snapshot) {
		s.Version = math.MaxInt64
		for i := range s.Clients {
			s.Clients[i].Enabled = false
		}
	})
	forger, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, reason string
		value        []byte
	}{
		{name: "unsigned", reason: "unsigned", value: forged},
		{name: "signed by another key", reason: "bad_signature", value: policy.Seal(forged, forger)},
		{name: "another snapshot under a real seal", reason: "bad_signature",
			value: slices.Concat(sealHeader(t, sealed(encode(func(*policy.Snapshot) {}))), forged)},
		{name: "garbage", reason: "invalid", value: sealed([]byte("\x1f\x8b not really gzip"))},
		{name: "unknown schema version", reason: "invalid", value: sealed(encode(func(s *policy.Snapshot) { s.SchemaVersion = policy.SchemaVersion + 1 }))},
	}
	counts := map[string]int{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.putRaw(t, tt.value)
			counts[tt.reason]++
			want := `portcullis_dataplane_policy_snapshots_rejected_total{reason="` + tt.reason + `"} ` + strconv.Itoa(counts[tt.reason])
			waitfor.That(t, "the rejection to be counted", func() bool { return strings.Contains(e.metrics(t), want) })
			if e.app.PolicyVersion() != good {
				t.Fatalf("PolicyVersion = %d, want %d", e.app.PolicyVersion(), good)
			}
			if resp := e.chat(t, e.token(t, "premium-app"), "gpt-4o"); resp.StatusCode != http.StatusOK {
				t.Fatalf("chat = %d with the last good policy", resp.StatusCode)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "its signature does not verify") {
		t.Fatal("a refused signature is not logged")
	}

	t.Run("an older version is ignored", func(t *testing.T) {
		newer := e.snapshot()
		newer.Clients = slices.DeleteFunc(newer.Clients, func(c policy.Client) bool { return c.ClientID == "premium-app" })
		e.publish(t, newer) // version good+1: premium-app gone
		openAIError(t, e.chat(t, e.token(t, "premium-app"), "gpt-4o"), http.StatusForbidden, apierr.ClientUnknown)

		stale := e.snapshot() // still has premium-app
		stale.Version = good
		b, err := policy.Encode(stale)
		if err != nil {
			t.Fatal(err)
		}
		e.putRaw(t, sealed(b))
		waitfor.That(t, "the stale snapshot to be counted", func() bool {
			return strings.Contains(e.metrics(t), `portcullis_dataplane_policy_snapshots_rejected_total{reason="stale"} 1`)
		})
		if e.app.PolicyVersion() != good+1 {
			t.Fatalf("PolicyVersion = %d, want %d", e.app.PolicyVersion(), good+1)
		}
		openAIError(t, e.chat(t, e.token(t, "premium-app"), "gpt-4o"), http.StatusForbidden, apierr.ClientUnknown)
	})
}

func TestClientAndTierAllowlists(t *testing.T) {
	e := newEnv(t, envOptions{})
	tests := []struct {
		name     string
		client   string
		path     string
		model    string
		status   int
		code     apierr.Code // "" for success
		logMatch string      // expected in the request's log line "error" field
	}{
		{name: "analytics may call completion on its model", client: "analytics-svc", path: "/v1/completions", model: "gpt-4o-mini", status: 200},
		{name: "analytics cannot call embeddings", client: "analytics-svc", path: "/v1/embeddings", model: "gpt-4o-mini", status: 403, code: apierr.OperationNotAllowed},
		{name: "analytics may chat: completion is all text generation", client: "analytics-svc", path: "/v1/chat/completions", model: "gpt-4o-mini", status: 200},
		{name: "a chat-only tier may chat", client: "chat-only-app", path: "/v1/chat/completions", model: "gpt-4o-mini", status: 200},
		{name: "a chat-only tier cannot call the legacy completions", client: "chat-only-app", path: "/v1/completions", model: "gpt-4o-mini", status: 403, code: apierr.OperationNotAllowed},
		{name: "a messages tier cannot chat", client: "messages-app", path: "/v1/chat/completions", model: "claude-3-5-sonnet", status: 403, code: apierr.OperationNotAllowed},
		{name: "analytics cannot use gpt-4o", client: "analytics-svc", path: "/v1/completions", model: "gpt-4o", status: 403, code: apierr.ModelNotAllowed},
		{name: "the model is checked before the operation", client: "analytics-svc", path: "/v1/embeddings", model: "gpt-4o", status: 403, code: apierr.ModelNotAllowed},
		{name: "default tier cannot use gpt-4o", client: "eu-app", path: "/v1/chat/completions", model: "gpt-4o", status: 403, code: apierr.ModelNotAllowed},
		{name: "disabled client", client: "disabled-app", path: "/v1/chat/completions", model: "gpt-4o-mini", status: 403, code: apierr.ClientDisabled},
		{name: "unknown client", client: "nobody", path: "/v1/chat/completions", model: "gpt-4o-mini", status: 403, code: apierr.ClientUnknown},
		{name: "allowed model without a deployment", client: "premium-app", path: "/v1/chat/completions", model: "ghost-model", status: 404, code: apierr.ModelNotFound},
		{name: "an anthropic model serves chat only", client: "premium-app", path: "/v1/completions", model: "claude-3-5-sonnet", status: 400, code: apierr.InvalidRequest, logMatch: ""},
		{name: "vault key source without a vault", client: "premium-app", path: "/v1/chat/completions", model: "vaulted-model", status: 503, code: apierr.UpstreamKey, logMatch: "this worker has no Vault: set PORTCULLIS_VAULT_ADDR"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "allow-" + strconv.Itoa(i)
			body := `{"model":"` + tt.model + `","prompt":"x","input":"x","messages":[{"role":"user","content":"x"}]}`
			resp := e.do(t, http.MethodPost, tt.path, e.token(t, tt.client), body, map[string]string{"X-Request-Id": id})
			if tt.code == "" {
				if resp.StatusCode != tt.status {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
				}
				return
			}
			openAIError(t, resp, tt.status, tt.code)
			line := accessLine(t, e.logs, id)
			if line["client_id"] != tt.client || line["error_code"] != string(tt.code) {
				t.Fatalf("log line client_id=%v error_code=%v", line["client_id"], line["error_code"])
			}
			if cause, _ := line["error"].(string); !strings.Contains(cause, tt.logMatch) {
				t.Fatalf("log line error %q does not mention %q", cause, tt.logMatch)
			}
		})
	}
}

func TestModelsListsOnlyWhatTheClientMayUse(t *testing.T) {
	e := newEnv(t, envOptions{})
	tests := []struct {
		client string
		want   []string
	}{
		{client: "premium-app", want: []string{"claude-3-5-sonnet", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small", "vaulted-model"}},
		{client: "eu-app", want: []string{"gpt-4o-mini", "text-embedding-3-small"}},
		{client: "analytics-svc", want: []string{"gpt-4o-mini"}},
	}
	for _, tt := range tests {
		t.Run(tt.client, func(t *testing.T) {
			resp := e.do(t, http.MethodGet, "/v1/models", e.token(t, tt.client), "", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			var list struct {
				Object string `json:"object"`
				Data   []struct {
					ID      string `json:"id"`
					Object  string `json:"object"`
					OwnedBy string `json:"owned_by"`
				} `json:"data"`
			}
			raw, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(raw, &list); err != nil {
				t.Fatalf("body %s: %v", raw, err)
			}
			var got []string
			for _, m := range list.Data {
				if m.Object != "model" || m.OwnedBy == "" {
					t.Errorf("model %+v is not in OpenAI's shape", m)
				}
				got = append(got, m.ID)
			}
			if list.Object != "list" || !slices.Equal(got, tt.want) {
				t.Fatalf("models = %s %v, want list %v", list.Object, got, tt.want)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	e := newEnv(t, envOptions{})
	t.Run("a second data plane on a busy address fails to start", func(t *testing.T) {
		cfg, err := app.LoadConfig([]string{"-region", "eu", "-listen", e.app.Addr(), "-nats-url", "nats://127.0.0.1:1",
			"-jwt-issuer", e.iss.Name, "-jwks-url", e.iss.JWKSURL,
			"-egress-allow-hosts", "127.0.0.1", "-policy-public-keys", policyPublicKeys}, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if a, err := app.Start(context.Background(), cfg, logging.New(io.Discard, "info")); err == nil {
			_ = a.Stop(context.Background())
			t.Fatal("Start succeeded on an address in use")
		}
	})
	t.Run("Stop is idempotent", func(t *testing.T) {
		for range 2 {
			if err := e.app.Stop(context.Background()); err != nil {
				t.Fatalf("Stop: %v", err)
			}
		}
		if _, err := http.Get(e.base + "/healthz"); err == nil {
			t.Fatal("the API still answers after Stop")
		}
	})
}

// sealHeader is the header line of a sealed snapshot, newline included.
func sealHeader(t *testing.T, sealedValue []byte) []byte {
	t.Helper()
	i := bytes.IndexByte(sealedValue, '\n')
	if i < 0 {
		t.Fatal("no seal header")
	}
	return sealedValue[:i+1]
}
