package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// TestEnvKeysRefusedWithoutTheDevFlag: a worker whose policy names a deployment with
// key_source env refuses to start unless PORTCULLIS_DEV_ALLOW_ENV_KEYS is on; with
// it, it starts, warns, and uses the variable's value.
func TestEnvKeysRefusedWithoutTheDevFlag(t *testing.T) {
	e := newEnv(t, envOptions{})
	s := e.snapshot()
	s.Deployments = append(s.Deployments, policy.Deployment{Name: "env-eu", Provider: "openai", Region: "eu",
		Kind: policy.KindCloud, BaseURL: e.spies["eu"].srv.URL, KeySource: policy.KeySourceEnv, KeyPath: "PORTCULLIS_TEST_OPENAI_KEY",
		TLS: policy.TLS{Verify: true}, TimeoutSeconds: 30, Enabled: true})
	s.Models = append(s.Models, policy.Model{ID: "env-model@env-eu", Name: "env-model", Deployment: "env-eu", UpstreamModel: "gpt-4o", Weight: 1})
	for i := range s.Tiers {
		s.Tiers[i].AllowedModels = append(s.Tiers[i].AllowedModels, "env-model")
	}
	e.publish(t, s)

	// The running worker (started before the snapshot) leaves the deployment unusable.
	resp := e.chat(t, e.token(t, "premium-app"), "env-model")
	if oe := openAIError(t, resp, http.StatusServiceUnavailable, apierr.UpstreamKey); !strings.Contains(oe.Message, "key") {
		t.Fatalf("message %q", oe.Message)
	}

	// A worker starting now refuses to.
	cfg := app.Config{Region: "eu", Listen: "127.0.0.1:0", NATSURL: e.natsURL, JWTIssuer: e.iss.Name, AuditSpoolDir: t.TempDir(),
		JWKSURL: e.iss.JWKSURL, WorkerID: "env-refused", PolicyPublicKeys: policyPublicKeys,
		EgressAllowHosts: "127.0.0.1"}
	if a, err := app.Start(context.Background(), cfg, logging.New(&logtest.Buffer{}, "info")); err == nil {
		_ = a.Stop(context.Background())
		t.Fatal("a worker started with an env-key deployment and no dev flag")
	} else if !strings.Contains(err.Error(), "env-eu") || !strings.Contains(err.Error(), "PORTCULLIS_DEV_ALLOW_ENV_KEYS") {
		t.Fatalf("refusal: %v", err)
	}

	// With the flag it starts and warns.
	t.Setenv("PORTCULLIS_TEST_OPENAI_KEY", "canary-env-key")
	logs := &logtest.Buffer{}
	cfg.WorkerID, cfg.DevAllowEnvKeys, cfg.AuditSpoolDir = "env-allowed", true, t.TempDir()
	a, err := app.Start(context.Background(), cfg, logging.New(logs, "info"))
	if err != nil {
		t.Fatalf("start with the dev flag: %v", err)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "PORTCULLIS_DEV_ALLOW_ENV_KEYS is on") {
		t.Fatalf("no warning at start:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "canary") {
		t.Fatal("the env key reached the log")
	}
}
