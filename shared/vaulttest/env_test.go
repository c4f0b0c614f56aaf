package vaulttest

import (
	"strings"
	"testing"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    config
		wantErr string
	}{
		{name: "neither set uses the launcher", env: nil, want: config{}},
		{
			name: "both set uses the external Vault",
			env:  map[string]string{EnvAddr: "http://127.0.0.1:8200/", EnvToken: " dev-root "},
			want: config{external: true, addr: "http://127.0.0.1:8200", token: "dev-root"},
		},
		{
			name: "https address",
			env:  map[string]string{EnvAddr: "https://vault.test:8200", EnvToken: "t"},
			want: config{external: true, addr: "https://vault.test:8200", token: "t"},
		},
		{name: "blank values count as unset", env: map[string]string{EnvAddr: " ", EnvToken: ""}, want: config{}},
		{name: "address without token", env: map[string]string{EnvAddr: "http://127.0.0.1:8200"}, wantErr: EnvToken + " is not"},
		{name: "token without address", env: map[string]string{EnvToken: "t"}, wantErr: EnvAddr + " is not"},
		{name: "address without scheme", env: map[string]string{EnvAddr: "127.0.0.1:8200", EnvToken: "t"}, wantErr: "want an http://"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := configFromEnv(func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("config %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestUnique(t *testing.T) {
	local := &Vault{}
	if got := local.Unique("kv1"); got != "kv1" {
		t.Errorf("launcher Vault: Unique(kv1) = %q, want kv1", got)
	}
	ext := &Vault{External: true}
	a, b := ext.Unique("kv1"), ext.Unique("kv1")
	if !strings.HasPrefix(a, "kv1-") || a == b {
		t.Errorf("external Vault: Unique(kv1) gave %q and %q, want distinct kv1-… names", a, b)
	}
}
