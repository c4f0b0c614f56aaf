package vaulttest

import (
	"fmt"
	"strings"
)

// The environment variables that point the tests at an external Vault.
const (
	EnvAddr  = "PORTCULLIS_TEST_VAULT_ADDR"
	EnvToken = "PORTCULLIS_TEST_VAULT_TOKEN"
)

// config says which Vault Start uses.
type config struct {
	external bool
	addr     string
	token    string
}

// configFromEnv decides from the environment (getenv is os.Getenv outside its tests)
// whether to use an external Vault. Both
// variables set means external; neither means the launcher; one without the other is
// an error, so a typo does not silently fall back to the launcher.
func configFromEnv(getenv func(string) string) (config, error) {
	addr := strings.TrimSpace(getenv(EnvAddr))
	token := strings.TrimSpace(getenv(EnvToken))
	switch {
	case addr == "" && token == "":
		return config{}, nil
	case addr == "":
		return config{}, fmt.Errorf("vaulttest: %s is set but %s is not; set both to use an external Vault, or neither", EnvToken, EnvAddr)
	case token == "":
		return config{}, fmt.Errorf("vaulttest: %s is set but %s is not; set both to use an external Vault, or neither", EnvAddr, EnvToken)
	}
	if !strings.HasPrefix(addr, "http://") && !strings.HasPrefix(addr, "https://") {
		return config{}, fmt.Errorf("vaulttest: %s=%q: want an http:// or https:// address", EnvAddr, addr)
	}
	return config{external: true, addr: strings.TrimRight(addr, "/"), token: token}, nil
}
