package app

import (
	"io"
	"strings"
	"testing"
)

// TestLoadConfigKeyDir: PORTCULLIS_KEY_DIR must be an absolute directory other than
// /; it and PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE load from the environment.
func TestLoadConfigKeyDir(t *testing.T) {
	base := map[string]string{"PORTCULLIS_DATABASE_URL": "postgres://x@127.0.0.1/db"}
	for _, bad := range []string{"keys", "/", "./keys"} {
		vars := map[string]string{"PORTCULLIS_KEY_DIR": bad}
		for k, v := range base {
			vars[k] = v
		}
		_, _, err := LoadConfig(nil, env(vars), io.Discard)
		if err == nil || !strings.Contains(err.Error(), `PORTCULLIS_KEY_DIR="`+bad+`"`) {
			t.Errorf("key dir %q: %v", bad, err)
		}
	}
	vars := map[string]string{"PORTCULLIS_KEY_DIR": "/etc/portcullis/keys", "PORTCULLIS_DEV_ALLOW_ANY_KEY_FILE": "true"}
	for k, v := range base {
		vars[k] = v
	}
	cfg, _, err := LoadConfig(nil, env(vars), io.Discard)
	if err != nil || cfg.KeyDir != "/etc/portcullis/keys" || !cfg.DevAllowAnyKeyFile {
		t.Fatalf("LoadConfig: %+v, %v", cfg, err)
	}
}
