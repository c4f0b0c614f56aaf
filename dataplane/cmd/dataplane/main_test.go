package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/shared/logtest"
	"github.com/portcullis-gw/portcullis/shared/signing"

	"github.com/portcullis-gw/portcullis/shared/natstest"
)

func TestRunRejectsABadConfiguration(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"-region", "eu", "-jwks-url", "file:///etc/passwd"}, noEnv, &bytes.Buffer{}, &stderr)
	if err == nil {
		t.Fatal("run succeeded with a bad configuration")
	}
	for _, want := range []string{"PORTCULLIS_NATS_URL", "PORTCULLIS_JWT_ISSUER", "PORTCULLIS_JWKS_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
}

func TestRunServesUntilTheContextEnds(t *testing.T) {
	ns := natstest.StartWith(t, natstest.Options{NoConn: true})
	policyKey := filepath.Join(t.TempDir(), "policy-signing-key.pem")
	if _, _, err := signing.LoadOrCreate(policyKey); err != nil {
		t.Fatal(err)
	}
	policyKey = signing.PublicPath(policyKey)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &logtest.Buffer{}
	done := make(chan error, 1)
	go func() {
		// The NATS URL comes from the environment run is given, not the process's.
		env := map[string]string{"PORTCULLIS_NATS_URL": ns.URL()}
		env["PORTCULLIS_EGRESS_ALLOW_HOSTS"] = "127.0.0.1" // required; no upstream is called here
		env["PORTCULLIS_POLICY_PUBLIC_KEYS"] = policyKey
		done <- run(ctx, []string{
			"-region", "eu", "-listen", "127.0.0.1:0",
			"-jwt-issuer", "http://127.0.0.1:1/issuer", "-jwks-url", "http://127.0.0.1:1/jwks.json",
		}, func(k string) string { return env[k] }, stdout, &bytes.Buffer{})
	}()

	var addr string
	deadline := time.Now().Add(30 * time.Second)
	for addr == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no listening line in the log:\n%s", stdout.String())
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == "data plane listening" {
				addr, _ = m["addr"].(string)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after the context ended")
	}
}

// noEnv is an empty environment, so that a test does not depend on the process's.
func noEnv(string) string { return "" }
