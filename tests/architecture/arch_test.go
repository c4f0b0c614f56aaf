// Package architecture enforces the module boundaries mechanically: the data plane
// never reaches Postgres or control-plane code, the control plane never reaches
// data-plane code (NATS is the only link between the planes), the shared wire
// contract stays free of echo, pgx and Vault, and the Vault client both planes use
// (vaultclient, a module of its own) depends on neither plane.
package architecture

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const prefix = "github.com/portcullis-gw/portcullis/"

// deps lists every package that the packages matching patterns import, directly or
// not, including test imports.
func deps(t *testing.T, patterns ...string) []string {
	t.Helper()
	return goList(t, append([]string{"-deps", "-test"}, patterns...)...)
}

// contractPackages lists the packages of the shared module, the wire contract.
func contractPackages(t *testing.T) []string {
	t.Helper()
	return goList(t, prefix+"shared/...")
}

const vaultClient = prefix + "vaultclient"

// goList runs go list with args from the repository root and returns the import
// paths it prints.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	pattern := strings.Join(args, " ")
	cmd := exec.Command("go", append([]string{"list", "-f", "{{.ImportPath}}"}, args...)...)
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pattern, err, stderr.String())
	}
	var pkgs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		pkgs = append(pkgs, sc.Text())
	}
	if len(pkgs) == 0 {
		t.Fatalf("go list %s listed no packages", pattern)
	}
	return pkgs
}

func TestModuleBoundaries(t *testing.T) {
	tests := []struct {
		name      string
		patterns  []string
		forbidden []string
		mustSee   string // a package that proves the listing is real
	}{
		{
			name:      "dataplane has no pgx and no control plane",
			patterns:  []string{prefix + "dataplane/..."},
			forbidden: []string{"github.com/jackc/pgx", prefix + "controlplane"},
			mustSee:   vaultClient,
		},
		{
			name:      "controlplane has no data plane",
			patterns:  []string{prefix + "controlplane/..."},
			forbidden: []string{prefix + "dataplane"},
			mustSee:   vaultClient,
		},
		{
			name:      "the shared contract has no echo, pgx or vault",
			patterns:  contractPackages(t),
			forbidden: []string{"github.com/labstack/echo", "github.com/jackc/pgx", "github.com/hashicorp/vault", vaultClient},
			mustSee:   prefix + "shared/policy",
		},
		{
			name:      "the vault client depends on neither plane",
			patterns:  []string{vaultClient + "/..."},
			forbidden: []string{prefix + "dataplane", prefix + "controlplane", "github.com/labstack/echo", "github.com/jackc/pgx"},
			mustSee:   "github.com/hashicorp/vault/api",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkgs := deps(t, tc.patterns...)
			seen := false
			for _, p := range pkgs {
				if p == tc.mustSee {
					seen = true
				}
				for _, f := range tc.forbidden {
					if p == f || strings.HasPrefix(p, f+"/") {
						t.Errorf("%s imports %s (forbidden: %s)", tc.name, p, f)
					}
				}
			}
			if !seen {
				t.Fatalf("%s: no dependency on %s: the listing looks wrong", tc.name, tc.mustSee)
			}
		})
	}
}

// TestForbiddenMatcherCatchesViolations proves the checks above can fail: packages
// that legitimately import what a rule forbids elsewhere must show it in their
// listing (the control plane uses pgx; the end-to-end tests use both planes).
func TestForbiddenMatcherCatchesViolations(t *testing.T) {
	tests := []struct {
		pattern, want string
	}{
		{prefix + "controlplane/...", "github.com/jackc/pgx/"},
		{prefix + "tests/e2e", prefix + "dataplane/"},
		{prefix + "tests/e2e", prefix + "controlplane/"},
		{prefix + "tests/e2e", "github.com/hashicorp/vault/"},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+" sees "+tc.want, func(t *testing.T) {
			for _, p := range deps(t, tc.pattern) {
				if strings.HasPrefix(p, tc.want) {
					return
				}
			}
			t.Fatalf("%s does not depend on %s*: the dependency listing cannot see violations", tc.pattern, tc.want)
		})
	}
}
