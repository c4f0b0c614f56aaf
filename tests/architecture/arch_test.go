// Package architecture enforces the module boundaries of DESIGN.md §2 mechanically:
// the data plane never reaches Postgres or control-plane code, and the shared wire
// contract stays free of echo, pgx and Vault.
package architecture

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const prefix = "github.com/portcullis-gw/portcullis/"

// deps lists every package that the packages matching pattern import, directly or
// not, including test imports.
func deps(t *testing.T, pattern string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-test", "-f", "{{.ImportPath}}", pattern)
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
		pattern   string
		forbidden []string
		mustSee   string // a package that proves the listing is real
	}{
		{
			name:      "dataplane has no pgx and no control plane",
			pattern:   prefix + "dataplane/...",
			forbidden: []string{"github.com/jackc/pgx", prefix + "controlplane"},
			mustSee:   prefix + "shared/policy",
		},
		{
			name:      "shared has no echo, pgx or vault",
			pattern:   prefix + "shared/...",
			forbidden: []string{"github.com/labstack/echo", "github.com/jackc/pgx", "github.com/hashicorp/vault"},
			mustSee:   prefix + "shared/policy",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pkgs := deps(t, tc.pattern)
			seen := false
			for _, p := range pkgs {
				if p == tc.mustSee {
					seen = true
				}
				for _, f := range tc.forbidden {
					if p == f || strings.HasPrefix(p, f+"/") {
						t.Errorf("%s imports %s (forbidden: %s)", tc.pattern, p, f)
					}
				}
			}
			if !seen {
				t.Fatalf("%s does not depend on %s: the listing looks wrong", tc.pattern, tc.mustSee)
			}
		})
	}
}

// TestForbiddenMatcherCatchesViolations proves the check above can fail: the control
// plane, which legitimately uses pgx, must be flagged by the dataplane rule.
func TestForbiddenMatcherCatchesViolations(t *testing.T) {
	pkgs := deps(t, prefix+"controlplane/...")
	for _, p := range pkgs {
		if strings.HasPrefix(p, "github.com/jackc/pgx/") {
			return
		}
	}
	t.Fatal("controlplane does not depend on pgx: the dependency listing cannot see violations")
}
