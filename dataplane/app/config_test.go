package app_test

import (
	"errors"
	"flag"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-gw/portcullis/dataplane/app"
	"github.com/portcullis-gw/portcullis/shared/logging"
	"github.com/portcullis-gw/portcullis/shared/natsauth"
)

func getenv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

var required = map[string]string{
	"PORTCULLIS_REGION":     "eu",
	"PORTCULLIS_NATS_URL":   "nats://127.0.0.1:14222",
	"PORTCULLIS_JWT_ISSUER": "http://127.0.0.1:8080",
	"PORTCULLIS_JWKS_URL":   "http://127.0.0.1:8080/.well-known/jwks.json",
	// Required too: the only upstream hosts a worker calls.
	"PORTCULLIS_EGRESS_ALLOW_HOSTS": "api.openai.com,api.anthropic.com",
}

func with(extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range required {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func TestLoadConfigDefaultsAndPrecedence(t *testing.T) {
	cfg, err := app.LoadConfig(nil, getenv(required), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.Listen != "127.0.0.1:8081" || cfg.JWTAudience != "portcullis-gateway" || cfg.MaxBodyBytes != 4<<20 ||
		cfg.LogLevel != "info" || cfg.ExposeRoutingHeaders || cfg.WorkerID == "" || cfg.Region != "eu" ||
		cfg.NATSCreds != "" || cfg.NATSCAFile != "" {
		t.Fatalf("defaults = %+v", cfg)
	}

	cfg, err = app.LoadConfig([]string{"-listen", "127.0.0.1:9999", "-expose-routing-headers"},
		getenv(with(map[string]string{"PORTCULLIS_LISTEN": "127.0.0.1:7777", "PORTCULLIS_JWT_AUDIENCE": "aud", "PORTCULLIS_WORKER_ID": "w1", "PORTCULLIS_MAX_BODY_BYTES": "1024"})), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.JWTAudience != "aud" || cfg.WorkerID != "w1" || cfg.MaxBodyBytes != 1024 || !cfg.ExposeRoutingHeaders {
		t.Fatalf("env then flags = %+v", cfg)
	}
}

// TestLoadConfigStartsFromDefault: with only the required keys set, LoadConfig
// gives Default with them, so the flags' defaults and Default cannot drift apart.
func TestLoadConfigStartsFromDefault(t *testing.T) {
	cfg, err := app.LoadConfig(nil, getenv(required), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	want := app.Default()
	want.Region, want.NATSURL, want.JWTIssuer, want.JWKSURL = required["PORTCULLIS_REGION"], required["PORTCULLIS_NATS_URL"],
		required["PORTCULLIS_JWT_ISSUER"], required["PORTCULLIS_JWKS_URL"]
	want.PolicyPublicKeys = required["PORTCULLIS_POLICY_PUBLIC_KEYS"]
	want.EgressAllowHosts = required["PORTCULLIS_EGRESS_ALLOW_HOSTS"]
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("LoadConfig with the required keys only:\n%+v\nwant Default with them:\n%+v", cfg, want)
	}
}

func TestLoadConfigReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want []string // each must appear in the error
	}{
		{name: "nothing set", vars: map[string]string{},
			want: []string{"PORTCULLIS_REGION", "PORTCULLIS_NATS_URL", "PORTCULLIS_JWT_ISSUER", "PORTCULLIS_JWKS_URL", "PORTCULLIS_EGRESS_ALLOW_HOSTS"}},
		{name: "bad values", vars: with(map[string]string{
			"PORTCULLIS_REGION": "e u", "PORTCULLIS_LISTEN": "nope", "PORTCULLIS_NATS_URL": "http://x:1",
			"PORTCULLIS_JWKS_URL": "ftp://idp/jwks", "PORTCULLIS_MAX_BODY_BYTES": "0", "PORTCULLIS_LOG_LEVEL": "loud",
			"PORTCULLIS_JWT_AUDIENCE": " ",
		}), want: []string{`PORTCULLIS_REGION="e u"`, `PORTCULLIS_LISTEN="nope"`, `PORTCULLIS_NATS_URL="http://x:1"`,
			`PORTCULLIS_JWKS_URL="ftp://idp/jwks"`, `PORTCULLIS_MAX_BODY_BYTES="0"`, `PORTCULLIS_LOG_LEVEL="loud"`, "PORTCULLIS_JWT_AUDIENCE"}},
		{name: "unparsable values", vars: with(map[string]string{"PORTCULLIS_EXPOSE_ROUTING_HEADERS": "maybe", "PORTCULLIS_MAX_BODY_BYTES": "lots"}),
			want: []string{`PORTCULLIS_EXPOSE_ROUTING_HEADERS="maybe"`, `PORTCULLIS_MAX_BODY_BYTES="lots"`}},
		{name: "unusable NATS files", vars: with(map[string]string{"PORTCULLIS_NATS_CREDS": "/nonexistent/user.creds"}),
			args: []string{"-nats-ca-file", "/nonexistent/ca.pem"},
			want: []string{`PORTCULLIS_NATS_CREDS="/nonexistent/user.creds": cannot read`, `PORTCULLIS_NATS_CA_FILE="/nonexistent/ca.pem": cannot read`}},
		{name: "plain-http JWKS off loopback", vars: with(map[string]string{"PORTCULLIS_JWKS_URL": "http://idp.example.com/jwks"}),
			want: []string{`PORTCULLIS_JWKS_URL="http://idp.example.com/jwks"`, "loopback host only"}},
		{name: "stray argument", vars: required, args: []string{"serve"}, want: []string{"unexpected positional arguments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := app.LoadConfig(tt.args, getenv(tt.vars), io.Discard)
			if err == nil {
				t.Fatal("LoadConfig succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %s:\n%v", w, err)
				}
			}
		})
	}
}

func TestLoadConfigHelp(t *testing.T) {
	var usage strings.Builder
	_, err := app.LoadConfig([]string{"-h"}, getenv(nil), &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(usage.String(), "PORTCULLIS_JWKS_URL") {
		t.Fatalf("usage does not name the env variables:\n%s", usage.String())
	}
}

func TestStartValidatesAHandBuiltConfig(t *testing.T) {
	_, err := app.Start(t.Context(), app.Config{Region: "eu", Listen: "127.0.0.1:0", NATSURL: "nats://127.0.0.1:1", JWTIssuer: "iss", JWKSURL: "not a url",
		NATSCreds: filepath.Join(t.TempDir(), "missing.creds")},
		logging.New(io.Discard, "info"))
	for _, want := range []string{"PORTCULLIS_JWKS_URL", "PORTCULLIS_NATS_CREDS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Start error = %v, want a %s problem", err, want)
		}
	}
}

// TestLoadConfigMetricsKeys: the metrics listener is on loopback by default, pprof
// and the client labels are off; "off" turns the listener off, a non-loopback
// address is allowed, and a bad value is an error naming its key.
func TestLoadConfigMetricsKeys(t *testing.T) {
	cfg, err := app.LoadConfig(nil, getenv(required), io.Discard)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.MetricsListen != "127.0.0.1:9464" || cfg.Pprof || cfg.MetricsClientLabels {
		t.Fatalf("defaults: metrics listen %q, pprof %v, client labels %v", cfg.MetricsListen, cfg.Pprof, cfg.MetricsClientLabels)
	}
	for _, tc := range []struct {
		vars   map[string]string
		args   []string
		listen string
		pprof  bool
		labels bool
	}{
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "off"}, listen: "off"},
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "0.0.0.0:9464", "PORTCULLIS_PPROF": "true", "PORTCULLIS_METRICS_CLIENT_LABELS": "1"},
			listen: "0.0.0.0:9464", pprof: true, labels: true},
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "127.0.0.1:1"}, args: []string{"-metrics-listen", "[::1]:0", "-pprof"},
			listen: "[::1]:0", pprof: true},
	} {
		cfg, err := app.LoadConfig(tc.args, getenv(with(tc.vars)), io.Discard)
		if err != nil {
			t.Fatalf("%v %v: %v", tc.vars, tc.args, err)
		}
		if cfg.MetricsListen != tc.listen || cfg.Pprof != tc.pprof || cfg.MetricsClientLabels != tc.labels {
			t.Errorf("%v %v: metrics listen %q, pprof %v, client labels %v", tc.vars, tc.args, cfg.MetricsListen, cfg.Pprof, cfg.MetricsClientLabels)
		}
	}
	for _, tc := range []struct {
		vars map[string]string
		args []string
		want string
	}{
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "9464"}, want: `PORTCULLIS_METRICS_LISTEN="9464"`},
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": ":9464"}, want: `PORTCULLIS_METRICS_LISTEN=":9464"`},
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "127.0.0.1:http"}, want: `PORTCULLIS_METRICS_LISTEN="127.0.0.1:http"`},
		{vars: map[string]string{"PORTCULLIS_METRICS_LISTEN": "disabled"}, want: `PORTCULLIS_METRICS_LISTEN="disabled"`},
		{args: []string{"-metrics-listen", ""}, want: `PORTCULLIS_METRICS_LISTEN=""`},
		{vars: map[string]string{"PORTCULLIS_PPROF": "yes"}, want: `PORTCULLIS_PPROF="yes"`},
		{vars: map[string]string{"PORTCULLIS_METRICS_CLIENT_LABELS": "sometimes"}, want: `PORTCULLIS_METRICS_CLIENT_LABELS="sometimes"`},
	} {
		_, err := app.LoadConfig(tc.args, getenv(with(tc.vars)), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one naming %s", tc.vars, tc.args, err, tc.want)
		}
	}
}

// TestLoadConfigIngressKeys: trusted proxies, the PROXY protocol and the bound on
// requests being authenticated, with errors that name the key.
func TestLoadConfigIngressKeys(t *testing.T) {
	cfg, err := app.LoadConfig(nil, getenv(required), io.Discard)
	if err != nil || cfg.TrustedProxies != "" || cfg.ProxyProtocol || cfg.MaxUnauthenticated != app.DefaultMaxUnauthenticated {
		t.Fatalf("defaults: %+v %v", cfg, err)
	}
	cfg, err = app.LoadConfig(nil, getenv(with(map[string]string{
		"PORTCULLIS_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1", "PORTCULLIS_PROXY_PROTOCOL": "true", "PORTCULLIS_MAX_UNAUTHENTICATED": "64",
	})), io.Discard)
	if err != nil || cfg.TrustedProxies != "10.0.0.0/8, 127.0.0.1" || !cfg.ProxyProtocol || cfg.MaxUnauthenticated != 64 {
		t.Fatalf("set: %+v %v", cfg, err)
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{vars: map[string]string{"PORTCULLIS_TRUSTED_PROXIES": "lb.internal"}, want: "PORTCULLIS_TRUSTED_PROXIES"},
		{vars: map[string]string{"PORTCULLIS_TRUSTED_PROXIES": "10.0.0.0/40"}, want: "PORTCULLIS_TRUSTED_PROXIES"},
		{vars: map[string]string{"PORTCULLIS_PROXY_PROTOCOL": "true"}, want: "PORTCULLIS_PROXY_PROTOCOL"},
		{vars: map[string]string{"PORTCULLIS_MAX_UNAUTHENTICATED": "0"}, want: "PORTCULLIS_MAX_UNAUTHENTICATED"},
	} {
		if _, err := app.LoadConfig(nil, getenv(with(tc.vars)), io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%v: err %v, want one naming %s", tc.vars, err, tc.want)
		}
	}
}

// TestLoadConfigRefusesAnotherRegionsNATSCreds: a worker given the credentials of
// another region's data planes, whose audit subjects NATS would refuse it, does not
// start, and says which credentials it got and which it wants.
func TestLoadConfigRefusesAnotherRegionsNATSCreds(t *testing.T) {
	auth, err := natsauth.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	us, err := auth.WriteCreds(natsauth.DataPlane("us"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.LoadConfig(nil, getenv(with(map[string]string{"PORTCULLIS_REGION": "eu", "PORTCULLIS_NATS_CREDS": us})), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "PORTCULLIS_NATS_CREDS") || !strings.Contains(err.Error(), "credentials of dp-us") ||
		!strings.Contains(err.Error(), "want dp-eu") {
		t.Fatalf("LoadConfig with dp-us credentials in eu: %v", err)
	}
	eu, err := auth.WriteCreds(natsauth.DataPlane("eu"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.LoadConfig(nil, getenv(with(map[string]string{"PORTCULLIS_REGION": "eu", "PORTCULLIS_NATS_CREDS": eu})), io.Discard); err != nil {
		t.Fatalf("LoadConfig with dp-eu credentials in eu: %v", err)
	}
}

// TestLoadConfigGuardrailsClassifierKeys: no classifier by default with a 300ms
// bound; an https URL, or http on loopback, is taken; plain http elsewhere and
// timeouts out of range are refused, naming the key.
func TestLoadConfigGuardrailsClassifierKeys(t *testing.T) {
	cfg, err := app.LoadConfig(nil, getenv(required), io.Discard)
	if err != nil || cfg.GuardrailsClassifierURL != "" || cfg.GuardrailsClassifierTimeout != 300*time.Millisecond {
		t.Fatalf("defaults: %q %v %v", cfg.GuardrailsClassifierURL, cfg.GuardrailsClassifierTimeout, err)
	}
	for _, u := range []string{"https://classifier.internal/score", "http://127.0.0.1:9300/score"} {
		cfg, err = app.LoadConfig(nil, getenv(with(map[string]string{
			"PORTCULLIS_GUARDRAILS_CLASSIFIER_URL": u, "PORTCULLIS_GUARDRAILS_CLASSIFIER_TIMEOUT": "1s",
		})), io.Discard)
		if err != nil || cfg.GuardrailsClassifierURL != u || cfg.GuardrailsClassifierTimeout != time.Second {
			t.Fatalf("%s: %+v %v", u, cfg.GuardrailsClassifierURL, err)
		}
	}
	for _, tc := range []struct {
		vars map[string]string
		want string
	}{
		{vars: map[string]string{"PORTCULLIS_GUARDRAILS_CLASSIFIER_URL": "http://classifier.internal/score"}, want: "PORTCULLIS_GUARDRAILS_CLASSIFIER_URL"},
		{vars: map[string]string{"PORTCULLIS_GUARDRAILS_CLASSIFIER_URL": "classifier:9300"}, want: "PORTCULLIS_GUARDRAILS_CLASSIFIER_URL"},
		{vars: map[string]string{"PORTCULLIS_GUARDRAILS_CLASSIFIER_TIMEOUT": "1ms"}, want: "PORTCULLIS_GUARDRAILS_CLASSIFIER_TIMEOUT"},
		{vars: map[string]string{"PORTCULLIS_GUARDRAILS_CLASSIFIER_TIMEOUT": "1m"}, want: "PORTCULLIS_GUARDRAILS_CLASSIFIER_TIMEOUT"},
	} {
		if _, err := app.LoadConfig(nil, getenv(with(tc.vars)), io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%v: err %v, want one naming %s", tc.vars, err, tc.want)
		}
	}
}
