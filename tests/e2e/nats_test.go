package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
)

// TestNATSIdentitiesAreLeastPrivilege: the stack's nats-server refuses a client
// without credentials. With the eu data planes' own credentials, a process cannot
// put to PC_POLICY, publish to the us audit subject, or announce a key revocation:
// NATS answers each with a permission error, and the policy in force stays. The
// workers themselves, serving traffic in both regions (audit, limits, key access,
// health, policy), never hit a permission error.
func TestNATSIdentitiesAreLeastPrivilege(t *testing.T) {
	t.Parallel()
	s := startStack(t, withLogs())
	s.seed(t)
	s.waitReady(t)
	token := s.mint(t, "global-app")
	for _, region := range []string{"eu", "us"} {
		for range 3 {
			if r := s.call(t, region, token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
				t.Fatalf("%s: status %d: %s", region, r.Status, r.Body)
			}
		}
	}

	if nc, err := nats.Connect(s.cp.NATSURL(), nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("the nats-server accepted a client without credentials")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("connect without credentials: %v, want an authorization error", err)
	}

	errs := natstest.NewErrors()
	nc := s.natsConnect(t, natsauth.DataPlane("eu"), errs.Handler())

	// The eu data planes' account reaches JetStream through the API prefix their
	// credentials name.
	js, err := jetstream.NewWithAPIPrefix(nc, natsauth.JSAPIPrefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, natsnames.PolicyBucket)
	if err != nil {
		t.Fatalf("the eu data planes' identity cannot open PC_POLICY: %v", err)
	}
	before, err := kv.Get(ctx, natsnames.PolicySnapshotKey)
	if err != nil {
		t.Fatalf("the eu data planes' identity cannot read the policy: %v", err)
	}
	putCtx, putCancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = kv.Put(putCtx, natsnames.PolicySnapshotKey, []byte("forged"))
	putCancel()
	if err == nil {
		t.Fatal("put to PC_POLICY succeeded with the eu data planes' identity")
	}
	errs.Refused(t, "put to PC_POLICY", natsauth.JSAPIPrefix+"."+natsnames.KVSubject(natsnames.PolicyBucket, natsnames.PolicySnapshotKey))

	for _, c := range []struct{ what, subject string }{
		{"publish to the us audit subject", natsnames.AuditSubject("us", "global-app")},
		{"announce a key revocation", natsnames.KeysRevokedSubject("openai")},
	} {
		if err := nc.Publish(c.subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		errs.Refused(t, c.what, c.subject)
	}

	after, err := kv.Get(ctx, natsnames.PolicySnapshotKey)
	if err != nil || after.Revision() != before.Revision() {
		t.Fatalf("PC_POLICY changed: revision %d -> %v (%v)", before.Revision(), after, err)
	}
	if r := s.call(t, "eu", token, "POST", "/v1/chat/completions", chatBody("gpt-4o-mini")); r.Status != http.StatusOK {
		t.Fatalf("eu after the attempts: status %d: %s", r.Status, r.Body)
	}
	if logs := strings.ToLower(s.logs.String()); strings.Contains(logs, "permissions violation") {
		t.Fatalf("a component hit a NATS permission error:\n%s", grepLines(s.logs.String(), "ermissions"))
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			b.WriteString(line)
		}
	}
	return b.String()
}
