package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

// TestSeedDemoNeedsKeyFile checks that seed demo refuses to run without --key-file, and
// no longer knows the Vault flags (the dev stack seeds Vault itself).
func TestSeedDemoNeedsKeyFile(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no key file", nil, "--key-file is required"},
		{"vault flag", []string{"--vault-addr", "http://127.0.0.1:1"}, "vault-addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), append([]string{"seed", "demo"}, tt.args...),
				IO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut}, func(k string) string { return map[string]string{EnvAdminToken: "pca_x"}[k] })
			if !errors.Is(err, ErrUsage) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			if !strings.Contains(err.Error()+errOut.String(), tt.want) {
				t.Errorf("err = %v (stderr %q), want it to say %q", err, errOut.String(), tt.want)
			}
		})
	}
}
