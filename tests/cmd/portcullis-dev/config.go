package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// config is the dev stack's configuration, from the environment. README.md and the
// package comment document every variable.
type config struct {
	Root    string // the repository root (holds go.work and bin/)
	DataDir string // PORTCULLIS_DEV_DATA_DIR, default <root>/.data

	DatabaseURL string // PORTCULLIS_DATABASE_URL

	ControlPlaneListen string // PORTCULLIS_DEV_CONTROLPLANE_LISTEN
	EUListen           string // PORTCULLIS_DEV_EU_LISTEN
	USListen           string // PORTCULLIS_DEV_US_LISTEN
	MockListen         string // PORTCULLIS_MOCK_LISTEN
	MockControlListen  string // PORTCULLIS_MOCK_CONTROL_LISTEN; set but empty: no control API
	NATSListen         string // PORTCULLIS_EMBEDDED_NATS_LISTEN
	OIDCListen         string // PORTCULLIS_DEV_OIDC_LISTEN: the dev OIDC provider

	// The planes' metrics listeners (/metrics, and /debug/pprof/ with
	// PORTCULLIS_PPROF=true), host:port or "off".
	ControlPlaneMetricsListen string // PORTCULLIS_DEV_CONTROLPLANE_METRICS_LISTEN
	EUMetricsListen           string // PORTCULLIS_DEV_EU_METRICS_LISTEN
	USMetricsListen           string // PORTCULLIS_DEV_US_METRICS_LISTEN

	Wait time.Duration // PORTCULLIS_DEV_WAIT_SECONDS: bound of each readiness wait
	Stop time.Duration // PORTCULLIS_DEV_STOP_SECONDS: bound of the stop

	DevVault         bool   // PORTCULLIS_DEV_VAULT=1 or true
	DevVaultListen   string // PORTCULLIS_DEV_VAULT_LISTEN
	DevVaultBin      string // PORTCULLIS_DEV_VAULT_BIN
	VaultAddr        string // VAULT_ADDR
	VaultToken       string // VAULT_TOKEN; never printed, passed on through a file
	VaultAllowRemote bool   // PORTCULLIS_DEV_VAULT_ALLOW_REMOTE=true
}

// Paths under the data directory.
func (c config) logDir() string   { return filepath.Join(c.DataDir, "logs") }
func (c config) tokenDir() string { return filepath.Join(c.DataDir, "dev-tokens") }
func (c config) keyDir() string   { return filepath.Join(c.DataDir, "dev-keys") } // PORTCULLIS_KEY_DIR of both planes
func (c config) keyFile() string  { return filepath.Join(c.keyDir(), "openai.key") }

// devAdminTokenFile holds the API token of dev-admin, the dev stack's administrator.
func (c config) devAdminTokenFile() string { return filepath.Join(c.DataDir, "dev-admin-token") }
func (c config) auditKeyFile() string      { return filepath.Join(c.DataDir, "dev-keys", "audit.key") }
func (c config) acceptKeysFile() string    { return filepath.Join(c.DataDir, "dev-keys", "accepted.keys") }
func (c config) adminKeyFile() string {
	return filepath.Join(c.DataDir, "dev-keys", "openai-admin.key")
}
func (c config) vaultTokenFile() string { return filepath.Join(c.DataDir, "vault-token") }

// The dev OIDC provider's demo password (the same for every demo person, made once)
// and its client secret (new at each start).
func (c config) oidcPasswordFile() string { return filepath.Join(c.DataDir, "dev-oidc-password") }
func (c config) oidcSecretFile() string   { return filepath.Join(c.DataDir, "dev-oidc-client-secret") }
func (c config) bin(name string) string   { return filepath.Join(c.Root, "bin", name) }
func (c config) controlPlaneURL() string {
	return "http://" + c.ControlPlaneListen
}

// dataPlaneURL is the URL a client on this machine calls the data plane listening on
// listen (host:port) at; a wildcard or empty host is reached on loopback.
func dataPlaneURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// loadConfig reads the configuration through lookupEnv and checks it, reporting
// every problem at once.
func loadConfig(lookupEnv func(string) (string, bool)) (config, error) {
	env := func(key, def string) string {
		if v, _ := lookupEnv(key); v != "" {
			return v
		}
		return def
	}
	var problems []error
	seconds := func(key string, def int) time.Duration {
		v := env(key, strconv.Itoa(def))
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			problems = append(problems, fmt.Errorf("%s=%q: want a whole number of seconds, at least 1", key, v))
			return time.Duration(def) * time.Second
		}
		return time.Duration(n) * time.Second
	}
	root, err := repoRoot()
	if err != nil {
		return config{}, err
	}
	c := config{
		Root:               root,
		DataDir:            env("PORTCULLIS_DEV_DATA_DIR", filepath.Join(root, ".data")),
		DatabaseURL:        env("PORTCULLIS_DATABASE_URL", ""),
		ControlPlaneListen: env("PORTCULLIS_DEV_CONTROLPLANE_LISTEN", "127.0.0.1:8080"),
		EUListen:           env("PORTCULLIS_DEV_EU_LISTEN", "127.0.0.1:8081"),
		USListen:           env("PORTCULLIS_DEV_US_LISTEN", "127.0.0.1:8082"),
		MockListen:         env("PORTCULLIS_MOCK_LISTEN", "127.0.0.1:9100"),
		MockControlListen:  "127.0.0.1:9101",
		NATSListen:         env("PORTCULLIS_EMBEDDED_NATS_LISTEN", "127.0.0.1:14222"),
		OIDCListen:         env("PORTCULLIS_DEV_OIDC_LISTEN", "127.0.0.1:9200"),
		Wait:               seconds("PORTCULLIS_DEV_WAIT_SECONDS", 60),
		Stop:               seconds("PORTCULLIS_DEV_STOP_SECONDS", 8),
		DevVaultListen:     env("PORTCULLIS_DEV_VAULT_LISTEN", "127.0.0.1:8200"),
		DevVaultBin:        env("PORTCULLIS_DEV_VAULT_BIN", ""),
		VaultAddr:          env("VAULT_ADDR", ""),
		VaultToken:         env("VAULT_TOKEN", ""),
		VaultAllowRemote:   env("PORTCULLIS_DEV_VAULT_ALLOW_REMOTE", "") == "true",
	}
	c.ControlPlaneMetricsListen = env("PORTCULLIS_DEV_CONTROLPLANE_METRICS_LISTEN", "127.0.0.1:9180")
	c.EUMetricsListen = env("PORTCULLIS_DEV_EU_METRICS_LISTEN", "127.0.0.1:9181")
	c.USMetricsListen = env("PORTCULLIS_DEV_US_METRICS_LISTEN", "127.0.0.1:9182")
	if v, ok := lookupEnv("PORTCULLIS_MOCK_CONTROL_LISTEN"); ok {
		c.MockControlListen = v // set but empty turns the control API off
	}
	switch v := env("PORTCULLIS_DEV_VAULT", ""); v {
	case "1", "true":
		c.DevVault = true
	case "", "0", "false":
	default:
		problems = append(problems, fmt.Errorf("PORTCULLIS_DEV_VAULT=%q: want 1 or true to start a dev Vault", v))
	}
	if c.DataDir, err = filepath.Abs(c.DataDir); err != nil {
		problems = append(problems, fmt.Errorf("PORTCULLIS_DEV_DATA_DIR: %w", err))
	}
	for _, l := range []struct{ key, value string }{
		{"PORTCULLIS_DEV_CONTROLPLANE_LISTEN", c.ControlPlaneListen}, {"PORTCULLIS_DEV_EU_LISTEN", c.EUListen},
		{"PORTCULLIS_DEV_US_LISTEN", c.USListen}, {"PORTCULLIS_MOCK_LISTEN", c.MockListen},
		{"PORTCULLIS_MOCK_CONTROL_LISTEN", c.MockControlListen}, {"PORTCULLIS_EMBEDDED_NATS_LISTEN", c.NATSListen},
		{"PORTCULLIS_DEV_VAULT_LISTEN", c.DevVaultListen}, {"PORTCULLIS_DEV_OIDC_LISTEN", c.OIDCListen},
		{"PORTCULLIS_DEV_CONTROLPLANE_METRICS_LISTEN", c.ControlPlaneMetricsListen},
		{"PORTCULLIS_DEV_EU_METRICS_LISTEN", c.EUMetricsListen}, {"PORTCULLIS_DEV_US_METRICS_LISTEN", c.USMetricsListen},
	} {
		if l.value == "" && l.key == "PORTCULLIS_MOCK_CONTROL_LISTEN" {
			continue
		}
		if l.value == "off" && strings.HasSuffix(l.key, "_METRICS_LISTEN") {
			continue
		}
		if _, _, err := net.SplitHostPort(l.value); err != nil {
			problems = append(problems, fmt.Errorf("%s=%q: want host:port", l.key, l.value))
		}
	}
	return c, errors.Join(problems...)
}

// repoRoot finds the directory holding go.work, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found: run make run from inside the repository")
		}
		dir = parent
	}
}
