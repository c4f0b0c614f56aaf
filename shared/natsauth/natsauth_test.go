package natsauth_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/portcullis-gw/portcullis/shared/audit"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsbuckets"
	"github.com/portcullis-gw/portcullis/shared/natsconn"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
)

// client is a connection as one role, and the asynchronous errors NATS sent it.
type client struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	errs *natstest.Errors
}

func connect(t *testing.T, url, creds string) *client {
	t.Helper()
	c := &client{errs: natstest.NewErrors()}
	o := natsconn.Options{URL: url, CredsFile: creds, Name: "natsauth-test"}
	nc, err := natsconn.Connect(o, slog.New(slog.DiscardHandler), c.errs.Handler())
	if err != nil {
		t.Fatalf("connect with %s: %v", filepath.Base(creds), err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = natsconn.JetStream(nc, o); err != nil {
		t.Fatal(err)
	}
	return c
}

func msgData(m *nats.Msg) string {
	if m == nil {
		return ""
	}
	return string(m.Data)
}

// refused waits for NATS's permission error about subject.
func (c *client) refused(t *testing.T, what, subject string) {
	t.Helper()
	c.errs.Refused(t, what, subject)
}

// noErrors fails when NATS refused anything c did.
func (c *client) noErrors(t *testing.T, what string) {
	t.Helper()
	c.errs.None(t, c.nc, what)
}

// TestRolesOnARealServer: an embedded nats-server trusting the authority refuses a
// client without credentials; the control plane may do everything; a region's data
// planes read the policy but cannot write it, publish only their own region's audit
// subjects and read only their own inbox; ops writes nothing.
func TestRolesOnARealServer(t *testing.T) {
	auth, err := natsauth.LoadOrCreate(filepath.Join(t.TempDir(), "nats-auth"))
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.StartWith(t, natstest.Options{Configure: auth.Configure, NoConn: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if nc, err := nats.Connect(ns.URL(), nats.Timeout(2*time.Second)); err == nil {
		nc.Close()
		t.Fatal("a client without credentials connected")
	} else if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("connect without credentials: %v, want an authorization error", err)
	}

	creds := func(r natsauth.Role) string {
		path, err := auth.WriteCreds(r)
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	cp := connect(t, ns.URL(), creds(natsauth.ControlPlane()))
	if err := natsbuckets.Ensure(ctx, cp.js, natsbuckets.Options{Replicas: 1}); err != nil {
		t.Fatalf("the control plane creates the buckets: %v", err)
	}
	policy, err := cp.js.KeyValue(ctx, natsnames.PolicyBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Put(ctx, natsnames.PolicySnapshotKey, []byte("signed policy")); err != nil {
		t.Fatalf("the control plane writes the policy: %v", err)
	}
	cp.noErrors(t, "control plane")

	eu := connect(t, ns.URL(), creds(natsauth.DataPlane("eu")))
	t.Run("data plane reads the policy", func(t *testing.T) {
		kv, err := eu.js.KeyValue(ctx, natsnames.PolicyBucket)
		if err != nil {
			t.Fatal(err)
		}
		e, err := kv.Get(ctx, natsnames.PolicySnapshotKey)
		if err != nil || string(e.Value()) != "signed policy" {
			t.Fatalf("get: %v", err)
		}
		st, err := eu.js.Stream(ctx, natsnames.KVStream(natsnames.PolicyBucket))
		if err != nil {
			t.Fatal(err)
		}
		if info, err := st.Info(ctx); err != nil || info.State.LastSeq != e.Revision() {
			t.Fatalf("the bucket's state: %v", err)
		}
		// Key rotations and revocations reach it as the control plane announces them.
		sub, err := eu.nc.SubscribeSync(natsnames.KeysRevokedSubject("openai"))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		eu.noErrors(t, "reading the policy and following key events")
		if _, err := cp.js.Publish(ctx, natsnames.KeysRevokedSubject("openai"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		if _, err := sub.NextMsg(5 * time.Second); err != nil {
			t.Fatalf("the revocation did not reach the data plane: %v", err)
		}
	})
	t.Run("data plane cannot write the policy", func(t *testing.T) {
		kv, err := eu.js.KeyValue(ctx, natsnames.PolicyBucket)
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		defer pcancel()
		if _, err := kv.Put(pctx, natsnames.PolicySnapshotKey, []byte("forged")); err == nil {
			t.Fatal("put to PC_POLICY succeeded")
		}
		eu.refused(t, "put to PC_POLICY", natsauth.JSAPIPrefix+"."+natsnames.KVSubject(natsnames.PolicyBucket, natsnames.PolicySnapshotKey))
		if _, err := eu.nc.Request("$JS.API.STREAM.PURGE."+natsnames.KVStream(natsnames.PolicyBucket), nil, time.Second); err == nil {
			t.Fatal("purge of PC_POLICY answered")
		}
		eu.refused(t, "purge PC_POLICY", "$JS.API.STREAM.PURGE."+natsnames.KVStream(natsnames.PolicyBucket))
		e, err := kv.Get(ctx, natsnames.PolicySnapshotKey)
		if err != nil || string(e.Value()) != "signed policy" {
			t.Fatalf("the policy changed: %q, %v", e.Value(), err)
		}
	})
	t.Run("data plane publishes its own region's audit only", func(t *testing.T) {
		if err := eu.nc.Publish(natsnames.AuditSubject("eu", "client-a"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		for _, subject := range []string{natsnames.HealthSubject("eu", "worker-1"), natsnames.KeysAccessSubject("eu", "worker-1")} {
			if err := eu.nc.Publish(subject, nil); err != nil {
				t.Fatal(err)
			}
		}
		eu.noErrors(t, "audit, health and key access of eu")
		if err := eu.nc.Publish(natsnames.AuditSubject("us", "client-a"), []byte("{}")); err != nil {
			t.Fatal(err)
		}
		eu.refused(t, "publish to audit.us", natsnames.AuditSubject("us", "client-a"))
		for _, subject := range []string{natsnames.KeysRevokedSubject("openai"), natsnames.AuditCheckpointSubject("eu"),
			natsnames.AlertSubject("token_spike", "client-a"), natsnames.HealthSubject("us", "w1")} {
			if err := eu.nc.Publish(subject, nil); err != nil {
				t.Fatal(err)
			}
			eu.refused(t, "publish", subject)
		}
	})
	t.Run("data plane creates no stream: the control plane creates its audit stream", func(t *testing.T) {
		// A stream created with republishing would have the server publish for it
		// (here: every audit event as a key revocation).
		cfg := jetstream.StreamConfig{Name: natsnames.AuditStream("eu"), Subjects: []string{natsnames.AuditSubjects("eu")},
			RePublish: &jetstream.RePublish{Source: "audit.eu.*", Destination: "keys.revoked.{{wildcard(1)}}"}}
		for _, try := range []func(context.Context) error{
			func(ctx context.Context) error { _, err := eu.js.CreateStream(ctx, cfg); return err },
			func(ctx context.Context) error { _, err := eu.js.UpdateStream(ctx, cfg); return err },
		} {
			tctx, tcancel := context.WithTimeout(ctx, 2*time.Second)
			err := try(tctx)
			tcancel()
			if err == nil {
				t.Fatal("the eu identity created or updated a stream")
			}
		}
		eu.refused(t, "create PC_AUDIT_EU", natsauth.JSAPIPrefix+".STREAM.CREATE."+natsnames.AuditStream("eu"))
		eu.refused(t, "update PC_AUDIT_EU", natsauth.JSAPIPrefix+".STREAM.UPDATE."+natsnames.AuditStream("eu"))

		// It asks the control plane, which creates the one safe configuration, for
		// its own region only.
		if _, err := audit.ServeStreamCreate(cp.nc, cp.js, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		body := []byte(`{"max_age":7200000000000}`)
		msg, err := eu.nc.Request(natsnames.AuditStreamCreateSubject("eu"), body, 5*time.Second)
		if err != nil || !strings.Contains(string(msg.Data), `"result":"created"`) {
			t.Fatalf("ask for PC_AUDIT_EU: %v %s", err, msgData(msg))
		}
		st, err := cp.js.Stream(ctx, natsnames.AuditStream("eu"))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config; got.RePublish != nil || len(got.Sources) > 0 || got.MaxAge != 2*time.Hour ||
			len(got.Subjects) != 1 || got.Subjects[0] != "audit.eu.>" {
			t.Fatalf("PC_AUDIT_EU as created: %+v", got)
		}
		if err := eu.nc.Publish(natsnames.AuditStreamCreateSubject("us"), body); err != nil {
			t.Fatal(err)
		}
		eu.refused(t, "ask for PC_AUDIT_US", natsnames.AuditStreamCreateSubject("us"))
	})
	t.Run("a reply subject makes the server publish nothing for a data plane", func(t *testing.T) {
		// A request's reply subject is not checked against the requester's
		// permissions. Within one account, the server's answer to a direct get
		// sent with reply $KV.PC_POLICY.snapshot would roll the policy back, and
		// one with reply $JS.API.STREAM.DELETE.PC_KEYS would delete the stream: a
		// data plane's account gets its answers through the server instead.
		before, err := policy.Get(ctx, natsnames.PolicySnapshotKey)
		if err != nil {
			t.Fatal(err)
		}
		get := natsauth.JSAPIPrefix + ".DIRECT.GET." + natsnames.KVStream(natsnames.PolicyBucket)
		for _, reply := range []string{natsnames.KVSubject(natsnames.PolicyBucket, natsnames.PolicySnapshotKey),
			"$JS.API.STREAM.DELETE." + natsnames.KeysStream} {
			if err := eu.nc.PublishRequest(get, reply, []byte(`{"seq":1}`)); err != nil {
				t.Fatal(err)
			}
		}
		eu.noErrors(t, "direct gets with borrowed reply subjects")
		time.Sleep(300 * time.Millisecond) // what the server would do, it does at once
		after, err := policy.Get(ctx, natsnames.PolicySnapshotKey)
		if err != nil || after.Revision() != before.Revision() {
			t.Fatalf("the policy changed: revision %d -> %v (%v)", before.Revision(), after, err)
		}
		if _, err := cp.js.Stream(ctx, natsnames.KeysStream); err != nil {
			t.Fatalf("PC_KEYS: %v", err)
		}
	})
	t.Run("data plane creates no consumer", func(t *testing.T) {
		// A push consumer delivers to any subject its creator names, so it would
		// let a data plane have the server publish a key revocation for it.
		for _, subject := range []string{
			"$JS.API.CONSUMER.CREATE." + natsnames.KVStream(natsnames.WorkersBucket),
			"$JS.API.CONSUMER.CREATE." + natsnames.KVStream(natsnames.WorkersBucket) + ".evil",
			"$JS.API.CONSUMER.DURABLE.CREATE." + natsnames.KeysStream + ".evil",
			"$JS.API.CONSUMER.CREATE." + natsnames.KeysStream + "." + natsnames.KeysAccessConsumer,
			"$JS.API.CONSUMER.DELETE." + natsnames.KeysStream + "." + natsnames.KeysAccessConsumer,
			"$JS.API.CONSUMER.MSG.NEXT." + natsnames.KeysStream + "." + natsnames.KeysAccessConsumer,
		} {
			body := `{"stream_name":"` + natsnames.KVStream(natsnames.WorkersBucket) + `","config":{"deliver_subject":"keys.revoked.openai"}}`
			if err := eu.nc.Publish(subject, []byte(body)); err != nil {
				t.Fatal(err)
			}
			eu.refused(t, "consumer API", subject)
		}
	})
	t.Run("data plane reads its own inbox only", func(t *testing.T) {
		sub, err := eu.nc.SubscribeSync("_INBOX.controlplane.>")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		eu.refused(t, "subscribe to the control plane's inbox", "_INBOX.controlplane.>")
	})
	t.Run("ops writes nothing", func(t *testing.T) {
		ops := connect(t, ns.URL(), creds(natsauth.Ops()))
		if _, err := ops.js.Stream(ctx, natsnames.KVStream(natsnames.PolicyBucket)); err != nil {
			t.Fatalf("ops reads stream info: %v", err)
		}
		ops.noErrors(t, "stream info")
		subject := natsnames.KVSubject(natsnames.PolicyBucket, natsnames.PolicySnapshotKey)
		if err := ops.nc.Publish(subject, nil); err != nil {
			t.Fatal(err)
		}
		ops.refused(t, "ops writes the policy", subject)
	})
}

// TestLoadOrCreateKeepsTheAccount: the account's key survives a restart (JetStream
// keeps an account's streams under its public key), and seeds are owner-only files.
func TestLoadOrCreateKeepsTheAccount(t *testing.T) {
	dir := t.TempDir()
	a, err := natsauth.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := natsauth.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a.AccountPublicKey() != b.AccountPublicKey() {
		t.Fatal("the account key changed across loads")
	}
	for _, f := range []string{natsauth.OperatorSeedFile, natsauth.AccountSeedFile, natsauth.SystemSeedFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}
	path, err := a.WriteCreds(natsauth.DataPlane("eu"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	token, err := jwt.ParseDecoratedJWT(data)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		t.Fatal(err)
	}
	// A data plane is in an account of its own (DP_EU), which reaches PORTCULLIS's
	// JetStream under a prefix its user JWT names.
	if uc.Name != "dp-eu" || uc.Issuer == a.AccountPublicKey() || !slices.Contains(uc.Tags, natsauth.JSAPIPrefixTag+natsauth.JSAPIPrefix) {
		t.Fatalf("user %q issued by %s with tags %v, want dp-eu in an account of its own, with the API prefix tag", uc.Name, uc.Issuer, uc.Tags)
	}
}

func TestRoleNamed(t *testing.T) {
	for _, name := range []string{"controlplane", "ops", "dp-eu", "dp-us-east"} {
		r, err := natsauth.RoleNamed(name)
		if err != nil || r.Name != name {
			t.Errorf("RoleNamed(%q) = %q, %v", name, r.Name, err)
		}
	}
	for _, name := range []string{"", "dp-", "dp-e.u", "admin"} {
		if _, err := natsauth.RoleNamed(name); err == nil {
			t.Errorf("RoleNamed(%q) accepted", name)
		}
	}
}

// TestRevoke: revoked credentials of a role are refused once the server has the
// account's new JWT (here at its restart); new credentials of the role and other
// roles' credentials still work, and the revocation survives a reload of the
// authority.
func TestRevoke(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats-auth")
	auth, err := natsauth.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.StartWith(t, natstest.Options{Configure: auth.Configure, NoConn: true})
	issue := func(r natsauth.Role) string {
		t.Helper()
		creds, err := auth.Creds(r)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), r.Name+".creds")
		if err := os.WriteFile(path, creds, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	connects := func(creds string) error {
		nc, err := nats.Connect(ns.URL(), nats.UserCredentials(creds), nats.Timeout(5*time.Second))
		if err == nil {
			nc.Close()
		}
		return err
	}
	eu1, eu2, cp := issue(natsauth.DataPlane("eu")), issue(natsauth.DataPlane("eu")), issue(natsauth.ControlPlane())
	for _, c := range []string{eu1, eu2, cp} {
		if err := connects(c); err != nil {
			t.Fatalf("before the revocation: %v", err)
		}
	}
	n, err := auth.Revoke("dp-eu")
	if err != nil || n != 2 {
		t.Fatalf("Revoke = %d, %v; want both dp-eu users", n, err)
	}
	// The revocation is in UsersFile: the authority loaded again knows it.
	if again, err := natsauth.LoadOrCreate(dir); err != nil {
		t.Fatal(err)
	} else if n, err := again.Revoke("dp-eu"); err != nil || n != 0 {
		t.Fatalf("Revoke again after a reload = %d, %v; want nothing left to revoke", n, err)
	}
	ns.Restart() // the embedded server takes the account's new JWT at its start
	for _, c := range []string{eu1, eu2} {
		if err := connects(c); !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("revoked credentials: %v, want an authorization error", err)
		}
	}
	if err := connects(issue(natsauth.DataPlane("eu"))); err != nil {
		t.Fatalf("new dp-eu credentials after the revocation: %v", err)
	}
	if err := connects(cp); err != nil {
		t.Fatalf("the control plane's credentials after revoking dp-eu: %v", err)
	}
}
