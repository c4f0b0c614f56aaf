package deploy

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/portcullis-gw/portcullis/shared/natsauth"
	"github.com/portcullis-gw/portcullis/shared/natsconn"
	"github.com/portcullis-gw/portcullis/shared/natsnames"
	"github.com/portcullis-gw/portcullis/shared/natstest"
	"github.com/portcullis-gw/portcullis/shared/testcerts"
)

// TestNATSServerConfig: deploy/nats/nats-server.conf, with the accounts that
// `controlplane nats-auth` writes beside it and throwaway certificates at its TLS
// paths, is a configuration nats-server accepts in which every listener
// authenticates: clients with TLS and credentials of the Portcullis account, routes
// with mutual TLS, monitoring on loopback only, and nothing else listening. A server
// running it refuses a client without credentials, and refuses the data planes'
// identity a write to the policy or to another region's audit subject.
func TestNATSServerConfig(t *testing.T) {
	conf, err := os.ReadFile(filepath.Join(deployDir, "nats", "nats-server.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	auth, err := natsauth.LoadOrCreate(filepath.Join(dir, "auth"))
	if err != nil {
		t.Fatal(err)
	}
	// What `controlplane nats-auth eu` writes: the eu data planes' account first.
	if _, err := auth.WriteCreds(natsauth.DataPlane("eu")); err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteServerConfig(); err != nil {
		t.Fatal(err)
	}
	ca := testcerts.NewCA(t)
	certFile, keyFile := testcerts.WritePair(t, ca.ServerCert(t))
	caFile := ca.WritePEM(t)
	routesCA := testcerts.NewCA(t)
	routeCert, routeKey := testcerts.WritePair(t, routesCA.ServerCert(t))
	clientAddr, clusterAddr := freeAddr(t), freeAddr(t)
	// The shipped paths and addresses, each of which must be in the file, and what
	// this test puts in their place.
	replace := [][2]string{
		{"/etc/nats/tls/tls.crt", certFile}, {"/etc/nats/tls/tls.key", keyFile}, {"/etc/nats/tls/ca.crt", caFile},
		{"/etc/nats/tls/route.crt", routeCert}, {"/etc/nats/tls/route.key", routeKey}, {"/etc/nats/tls/routes-ca.crt", routesCA.WritePEM(t)},
		{"/var/lib/nats/jetstream", filepath.Join(dir, "jetstream")},
		{"listen: 0.0.0.0:4222", "listen: " + clientAddr},
		{"http: 127.0.0.1:8222", "http: " + freeAddr(t)},
		{"listen: 0.0.0.0:6222", "listen: " + clusterAddr},
		// JetStream in a cluster needs a route: this server's own, over the cluster's
		// mutual TLS.
		{"# tls://portcullis-REGION-2:6222", "tls://" + clusterAddr},
		{"REGION", "eu"},
	}
	text := string(conf)
	for _, r := range replace {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("deploy/nats/nats-server.conf no longer has %q; update this test", r[0])
		}
		text = strings.ReplaceAll(text, r[0], r[1])
	}
	path := filepath.Join(dir, "nats-server.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server refuses the configuration: %v", err)
	}

	t.Run("every listener authenticates", func(t *testing.T) {
		if len(opts.TrustedOperators) == 0 || opts.AccountResolver == nil {
			t.Error("clients: no trusted operator and account resolver: a client needs no credentials")
		}
		if opts.NoAuthUser != "" || len(opts.Users) > 0 || len(opts.Nkeys) > 0 || opts.Username != "" || opts.Authorization != "" {
			t.Error("clients: a user, token or no_auth_user beside the operator's accounts")
		}
		if opts.TLSConfig == nil {
			t.Error("clients: no TLS")
		}
		if opts.Cluster.Port != 0 && (opts.Cluster.TLSConfig == nil || opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert) {
			t.Error("routes: the cluster listener does not require a certificate of the CA (tls verify: true)")
		}
		if opts.Cluster.TLSConfig != nil && opts.TLSConfig != nil && opts.Cluster.TLSConfig.ClientCAs != nil &&
			opts.Cluster.TLSConfig.ClientCAs.Equal(opts.TLSConfig.ClientCAs) {
			t.Error("routes trust the clients' CA: a client's certificate would open a route, where no permission applies")
		}
		if opts.HTTPPort != 0 && !net.ParseIP(opts.HTTPHost).IsLoopback() {
			t.Errorf("monitoring listens on %q: it has no authentication, keep it on loopback", opts.HTTPHost)
		}
		if opts.HTTPSPort != 0 {
			t.Error("monitoring over HTTPS has no authentication either; keep it on loopback HTTP")
		}
		if opts.LeafNode.Port != 0 || opts.Websocket.Port != 0 || opts.MQTT.Port != 0 || opts.Gateway.Port != 0 {
			t.Error("a leafnode, websocket, MQTT or gateway listener: this test does not check its authentication yet")
		}
		if !opts.JetStream || !opts.SyncAlways {
			t.Error("JetStream must acknowledge writes only once on disk (sync_interval: always)")
		}
	})

	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}

	clientCert, clientKey := testcerts.WritePair(t, ca.ClientCert(t, "portcullis"))
	url := "tls://" + clientAddr
	connect := func(creds string, withCert bool, errs *natstest.Errors) (*nats.Conn, error) {
		o := natsconn.Options{URL: url, CredsFile: creds, CAFile: caFile, Name: "deploy-test"}
		if withCert {
			o.CertFile, o.KeyFile = clientCert, clientKey
		}
		return natsconn.Connect(o, slog.New(slog.DiscardHandler), nats.Timeout(5*time.Second), nats.MaxReconnects(0), errs.Handler())
	}
	creds := func(r natsauth.Role) string {
		path, err := auth.WriteCreds(r)
		if err != nil {
			t.Fatal(err)
		}
		return path
	}

	t.Run("a client without credentials is refused", func(t *testing.T) {
		nc, err := connect("", true, natstest.NewErrors())
		if err == nil {
			nc.Close()
			t.Fatal("connected")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("%v, want an authorization error", err)
		}
	})
	t.Run("a client without a certificate is refused", func(t *testing.T) {
		nc, err := connect(creds(natsauth.ControlPlane()), false, natstest.NewErrors())
		if err == nil {
			nc.Close()
			t.Fatal("connected")
		}
	})

	policy := natsnames.KVSubject(natsnames.PolicyBucket, natsnames.PolicySnapshotKey)
	t.Run("the control plane writes the policy", func(t *testing.T) {
		errs := natstest.NewErrors()
		nc, err := connect(creds(natsauth.ControlPlane()), true, errs)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if err := nc.Publish(policy, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // an error would be on its way by now
		errs.None(t, nc, "control plane")
	})
	t.Run("a data plane writes no policy and no other region's audit", func(t *testing.T) {
		errs := natstest.NewErrors()
		nc, err := connect(creds(natsauth.DataPlane("eu")), true, errs)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		for _, subject := range []string{policy, "$JS.API.STREAM.UPDATE." + natsnames.KVStream(natsnames.PolicyBucket),
			natsnames.AuditSubject("us", "client")} {
			if err := nc.Publish(subject, nil); err != nil {
				t.Fatal(err)
			}
			errs.Refused(t, "publish to "+subject, subject)
		}
	})
	t.Run("revoked credentials are refused after a reload", func(t *testing.T) {
		old, err := os.ReadFile(creds(natsauth.DataPlane("eu")))
		if err != nil {
			t.Fatal(err)
		}
		oldPath := filepath.Join(t.TempDir(), "old.creds")
		if err := os.WriteFile(oldPath, old, 0o600); err != nil {
			t.Fatal(err)
		}
		nc, err := connect(oldPath, true, natstest.NewErrors())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// What `controlplane nats-auth revoke dp-eu` does, then the operator's reload.
		if _, err := auth.Revoke("dp-eu"); err != nil {
			t.Fatal(err)
		}
		if err := auth.WriteServerConfig(); err != nil {
			t.Fatal(err)
		}
		if err := ns.Reload(); err != nil {
			t.Fatalf("reload: %v", err)
		}
		waitClosed := time.Now().Add(5 * time.Second)
		for !nc.IsClosed() && time.Now().Before(waitClosed) {
			time.Sleep(20 * time.Millisecond)
		}
		if !nc.IsClosed() {
			t.Error("the revoked user's connection is still open after the reload")
		}
		if nc, err := connect(oldPath, true, natstest.NewErrors()); err == nil {
			nc.Close()
			t.Fatal("revoked credentials connected after the reload")
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("revoked credentials: %v, want an authorization error", err)
		}
		nc2, err := connect(creds(natsauth.DataPlane("eu")), true, natstest.NewErrors())
		if err != nil {
			t.Fatalf("new dp-eu credentials: %v", err)
		}
		nc2.Close()
	})
}

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
