package app

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/controlplane/internal/signin"

	"github.com/portcullis-gw/portcullis/controlplane/internal/adminapi"

	"github.com/portcullis-gw/portcullis/controlplane/internal/auditarchive"
	"github.com/portcullis-gw/portcullis/controlplane/internal/rotator"
	"github.com/portcullis-gw/portcullis/vaultclient"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string // substrings the error must contain
		notWant []string // substrings it must not contain
	}{
		{
			name: "bad listen and missing database url are both named",
			args: []string{"--listen", "nope"},
			want: []string{`PORTCULLIS_LISTEN="nope"`, `PORTCULLIS_DATABASE_URL=""`},
		},
		{
			name: "every key at once",
			env: map[string]string{
				"PORTCULLIS_DATABASE_URL":     "mysql://x",
				"PORTCULLIS_NATS_URL":         "http://127.0.0.1:4222",
				"PORTCULLIS_ISSUER_URL":       "ftp://issuer",
				"PORTCULLIS_LOG_LEVEL":        "loud",
				"PORTCULLIS_DATA_DIR":         " ",
				"PORTCULLIS_LISTEN":           "127.0.0.1:99999",
				"PORTCULLIS_PUBLISH_INTERVAL": "10ms",
				"PORTCULLIS_NATS_REPLICAS":    "6",
				"PORTCULLIS_WORKER_TTL":       "10m",
			},
			want: []string{"PORTCULLIS_DATABASE_URL=", "PORTCULLIS_NATS_URL=", "PORTCULLIS_ISSUER_URL=",
				"PORTCULLIS_LOG_LEVEL=", "PORTCULLIS_DATA_DIR=", "PORTCULLIS_LISTEN=", "PORTCULLIS_PUBLISH_INTERVAL=",
				`PORTCULLIS_NATS_REPLICAS="6": must be from 1 to 5`, `PORTCULLIS_WORKER_TTL="10m0s": must be between 3s and 5m0s`},
		},
		{
			name: "bucket keys at their bounds",
			args: []string{"--database-url", "postgres://x@127.0.0.1/db", "--nats-url", "nats://127.0.0.1:4222",
				"--nats-replicas", "0", "--worker-ttl", "2s"},
			want: []string{`PORTCULLIS_NATS_REPLICAS="0": must be from 1 to 5`, `PORTCULLIS_WORKER_TTL="2s": must be between 3s and 5m0s`},
		},
		{
			name: "replicas need a nats url",
			args: []string{"--database-url", "postgres://x@127.0.0.1/db", "--nats-replicas", "3"},
			want: []string{`PORTCULLIS_NATS_REPLICAS="3": must be 1 without nats-url`},
		},
		{
			name:    "password is redacted",
			args:    []string{"--database-url", "mysql://admin:hunter2@db:5432/x"},
			want:    []string{"PORTCULLIS_DATABASE_URL=", "scheme must be postgres"},
			notWant: []string{"hunter2"},
		},
		{
			name: "embedded listen checked only without a nats url",
			args: []string{"--database-url", "postgres://x@127.0.0.1/db", "--embedded-nats-listen", "bad"},
			want: []string{`PORTCULLIS_EMBEDDED_NATS_LISTEN="bad"`},
		},
		{
			name: "nats credentials and CA apply only with a nats url",
			args: []string{"--database-url", "postgres://x@127.0.0.1/db", "--nats-creds", "/etc/nats/user.creds", "--nats-ca-file", "/etc/nats/ca.pem"},
			want: []string{`PORTCULLIS_NATS_CREDS="/etc/nats/user.creds": applies only with nats-url`,
				`PORTCULLIS_NATS_CA_FILE="/etc/nats/ca.pem": applies only with nats-url`},
		},
		{
			name: "unreadable nats files are named",
			env: map[string]string{
				"PORTCULLIS_DATABASE_URL": "postgres://x@127.0.0.1/db", "PORTCULLIS_NATS_URL": "tls://127.0.0.1:4222",
				"PORTCULLIS_NATS_CREDS": "/nonexistent/user.creds", "PORTCULLIS_NATS_CA_FILE": "/nonexistent/ca.pem",
			},
			want: []string{`PORTCULLIS_NATS_CREDS="/nonexistent/user.creds": cannot read`,
				`PORTCULLIS_NATS_CA_FILE="/nonexistent/ca.pem": cannot read`},
		},
		{
			name: "anomaly keys",
			args: []string{"--database-url", "postgres://x@127.0.0.1/db", "--anomaly-check-interval", "100ms",
				"--alert-webhook-url", "ftp://hooks.example/secret-token"},
			want: []string{`PORTCULLIS_ANOMALY_CHECK_INTERVAL="100ms": must be between 1s and 10m`,
				"PORTCULLIS_ALERT_WEBHOOK_URL=", "must be an absolute http(s) URL",
				`PORTCULLIS_ALERT_WEBHOOK_SECRET_FILE="": required with alert-webhook-url`},
			notWant: []string{"secret-token"},
		},
		{
			name: "unparsable values are named with the invalid ones",
			args: []string{"--listen", "x"},
			env:  map[string]string{"PORTCULLIS_DEV_ISSUER": "maybe", "PORTCULLIS_PUBLISH_INTERVAL": "soon"},
			want: []string{"PORTCULLIS_DEV_ISSUER=", "PORTCULLIS_PUBLISH_INTERVAL=", `PORTCULLIS_LISTEN="x"`, "PORTCULLIS_DATABASE_URL="},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := LoadConfig(tt.args, env(tt.env), io.Discard)
			if err == nil {
				t.Fatal("LoadConfig accepted a bad configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error leaks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadConfigDefaultsEnvAndFlags(t *testing.T) {
	cfg, rest, err := LoadConfig(
		[]string{"--listen", "127.0.0.1:9999", "--dev-issuer", "migrate"},
		env(map[string]string{
			"PORTCULLIS_DATABASE_URL":  "postgres://postgres@127.0.0.1:5432/portcullis",
			"PORTCULLIS_LISTEN":        "127.0.0.1:7777", // the flag wins
			"PORTCULLIS_NATS_URL":      "nats://127.0.0.1:4333",
			"PORTCULLIS_NATS_REPLICAS": "3",
		}), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := Config{
		DatabaseURL:           "postgres://postgres@127.0.0.1:5432/portcullis",
		Listen:                "127.0.0.1:9999",
		MetricsListen:         DefaultMetricsListen,
		NATSURL:               "nats://127.0.0.1:4333",
		EmbeddedNATSListen:    DefaultEmbeddedNATSListen,
		DataDir:               DefaultDataDir,
		LogLevel:              "info",
		DevIssuer:             true,
		PublishInterval:       30 * time.Second,
		NATSReplicas:          3,
		WorkerTTL:             DefaultWorkerTTL,
		Vault:                 vaultclient.DefaultConfig(),
		RotationCheckInterval: rotator.DefaultCheckInterval,
		AuditIngest:           true,
		AnomalyCheckInterval:  5 * time.Second,
	}
	want.AuditCheckpointInterval = auditarchive.DefaultCheckpointInterval
	want.OpenAIAdminURL, want.PolicyLagAlertAfter = rotator.DefaultOpenAIAdminURL, DefaultPolicyLagAlertAfter
	want.AdminTokenMaxTTL = adminapi.DefaultTokenMaxTTL
	want.OIDC = OIDCConfig{Scopes: "email,profile,groups", RoleClaim: "groups", NameClaim: "email",
		IdleTimeout: signin.DefaultIdleTimeout, MaxAge: signin.DefaultMaxAge, CLITokenTTL: signin.DefaultCLITokenTTL}
	if cfg != want {
		t.Fatalf("config\n got %+v\nwant %+v", cfg, want)
	}
	if len(rest) != 1 || rest[0] != "migrate" {
		t.Fatalf("positional args %q, want [migrate]", rest)
	}

	cfg, _, err = LoadConfig([]string{"--worker-ttl", "45s"},
		env(map[string]string{"PORTCULLIS_DATABASE_URL": "postgres://postgres@127.0.0.1:5432/portcullis"}), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.NATSReplicas != 1 || cfg.WorkerTTL != 45*time.Second {
		t.Fatalf("nats-replicas %d, worker-ttl %v; want the default 1 and the flag's 45s", cfg.NATSReplicas, cfg.WorkerTTL)
	}
}

func TestIssuerFor(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"0.0.0.0:8080", "http://127.0.0.1:8080"},
		{"[::]:8080", "http://127.0.0.1:8080"},
		{"[::1]:8080", "http://[::1]:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if got := issuerFor(tt.addr); got != tt.want {
				t.Fatalf("issuerFor(%q) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}
