// Package deploy checks the production deployment material in deploy/ against the
// rules of docs/design.md §6 and the binaries it deploys:
//
//   - no Kubernetes container gets a secret as a literal env value;
//   - every PORTCULLIS_* variable in a manifest is a real configuration key of the
//     binary the container runs (read from that binary's -h);
//   - containers run as non-root with a read-only root and no capabilities;
//   - the Vault roles bind the right service accounts to the right policies;
//   - the data-plane Vault policy grants no write on secret/, and each policy grants
//     exactly what its side needs;
//   - the nats-server configuration authenticates every listener, and a real server
//     running it refuses the data planes' identity a write to the policy.
package deploy

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	cpapp "github.com/portcullis-gw/portcullis/controlplane/app"
	dpapp "github.com/portcullis-gw/portcullis/dataplane/app"
)

// deployDir is the repository's deploy/ folder, seen from this package.
const deployDir = "../../deploy"

// pendingKeys are configuration keys the manifests may use before the binaries have
// them: added by issue 5's data-plane work; remove when the binary has them.
// TestPendingKeysStillPending fails once every binary using one of them reads it.
// Empty now: both binaries read every PORTCULLIS_VAULT_* key the manifests use.
var pendingKeys = map[string]bool{}

var helpEnvName = regexp.MustCompile(`\(env (PORTCULLIS_[A-Z0-9_]+)\)`)

// configKeys returns the PORTCULLIS_* variables of each binary, as its -h prints them.
func configKeys(t *testing.T) map[string]map[string]bool {
	t.Helper()
	noEnv := func(string) string { return "" }
	help := map[string]func(*bytes.Buffer) error{
		"dataplane": func(b *bytes.Buffer) error {
			_, err := dpapp.LoadConfig([]string{"-h"}, noEnv, b)
			return err
		},
		"controlplane": func(b *bytes.Buffer) error {
			_, _, err := cpapp.LoadConfig([]string{"-h"}, noEnv, b)
			return err
		},
	}
	keys := map[string]map[string]bool{}
	for binary, run := range help {
		var out bytes.Buffer
		if err := run(&out); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s -h: got %v, want flag.ErrHelp", binary, err)
		}
		keys[binary] = map[string]bool{}
		for _, m := range helpEnvName.FindAllStringSubmatch(out.String(), -1) {
			keys[binary][m[1]] = true
		}
		// Proves the listing is real: both binaries have a listen address.
		if !keys[binary]["PORTCULLIS_LISTEN"] {
			t.Fatalf("%s -h lists no PORTCULLIS_LISTEN; the help format changed:\n%s", binary, out.String())
		}
	}
	return keys
}

// loadManifests parses every YAML file under deploy/k8s.
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	var all []manifest
	files, err := filepath.Glob(filepath.Join(deployDir, "k8s", "*.y*ml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no YAML files in deploy/k8s")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(deployDir, f)
		ms, err := parseManifests(filepath.ToSlash(rel), data)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ms...)
	}
	return all
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func newChecker(t *testing.T) *checker {
	t.Helper()
	roles := parseVaultRoles(readFile(t, "vault/README.md"))
	if len(roles) == 0 {
		t.Fatal("deploy/vault/README.md creates no Kubernetes auth role")
	}
	return &checker{keys: configKeys(t), pending: pendingKeys, roles: roles, load: loaders()}
}

// loaders run each binary's configuration loader on an environment.
func loaders() map[string]func(func(string) string) error {
	return map[string]func(func(string) string) error{
		"dataplane": func(getenv func(string) string) error {
			_, err := dpapp.LoadConfig(nil, getenv, io.Discard)
			return err
		},
		"controlplane": func(getenv func(string) string) error {
			_, _, err := cpapp.LoadConfig(nil, getenv, io.Discard)
			return err
		},
	}
}

func TestManifests(t *testing.T) {
	ms := loadManifests(t)
	c := newChecker(t)
	for _, p := range c.check(ms) {
		t.Error(p)
	}
	// The files deploy/README.md describes are there and are what it says.
	want := []struct {
		file     string
		contains []string // in the JSON form of an object's spec
	}{
		{"k8s/namespace.yaml", nil},
		{"k8s/serviceaccounts.yaml", nil},
		{"k8s/dataplane-service.yaml", nil},
		{"k8s/controlplane.yaml", []string{`"image":"ghcr.io/portcullis-gw/controlplane:`,
			`{"name":"PORTCULLIS_VAULT_AUTH","value":"kubernetes"}`, `"secretKeyRef":{"key":"url","name":"portcullis-database"}`}},
		{"k8s/dataplane-vault-k8s-auth.yaml", []string{`"image":"ghcr.io/portcullis-gw/dataplane:`,
			`{"name":"PORTCULLIS_VAULT_AUTH","value":"kubernetes"}`}},
		{"k8s/dataplane-vault-agent.yaml", []string{`"image":"ghcr.io/portcullis-gw/dataplane:`,
			`"vault.hashicorp.com/agent-configmap":"portcullis-dataplane-vault-agent"`, `{"name":"PORTCULLIS_VAULT_AUTH","value":"token"}`,
			`{"name":"PORTCULLIS_VAULT_TOKEN_FILE","value":"/vault/secrets/token"}`}},
		{"k8s/example-file-key-secret.yaml", []string{`"image":"ghcr.io/portcullis-gw/dataplane:`,
			`"secret":{"defaultMode":288,"secretName":"portcullis-upstream-keys"}`}},
	}
	for _, w := range want {
		found := slices.ContainsFunc(ms, func(m manifest) bool {
			return m.File == w.file && !slices.ContainsFunc(w.contains, func(s string) bool { return !strings.Contains(string(m.Spec), s) })
		})
		if !found {
			t.Errorf("%s: missing, or no object's spec contains all of %q", w.file, w.contains)
		}
	}
}

// TestPendingKeysStillPending keeps pendingKeys honest: a key that no manifest needs
// as pending any more (every binary using it reads it now, or nothing uses it) must
// leave the list.
func TestPendingKeysStillPending(t *testing.T) {
	c := newChecker(t)
	c.check(loadManifests(t))
	for _, k := range slices.Sorted(maps.Keys(pendingKeys)) {
		if len(c.pendingUse[k]) == 0 {
			t.Errorf("pendingKeys: %s is read by every binary whose manifests use it, or used by none; remove it", k)
		}
	}
}

// TestManifestChecksCatchViolations proves each check can fail.
func TestManifestChecksCatchViolations(t *testing.T) {
	const sa = `apiVersion: v1
kind: ServiceAccount
metadata: {name: portcullis-dataplane, namespace: portcullis}
---
`
	const good = sa + `apiVersion: apps/v1
kind: Deployment
metadata: {name: dp, namespace: portcullis}
spec:
  selector: {matchLabels: {app: dp}}
  template:
    metadata: {labels: {app: dp}}
    spec:
      serviceAccountName: portcullis-dataplane
      securityContext: {runAsNonRoot: true}
      volumes: [{name: creds, secret: {secretName: x}}]
      containers:
        - name: dataplane
          image: ghcr.io/portcullis-gw/dataplane:1
          securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: creds, mountPath: /etc/creds}]
          env:
            - {name: PORTCULLIS_REGION, value: eu}
            - {name: PORTCULLIS_NATS_URL, value: "tls://nats:4222"}
            - {name: PORTCULLIS_NATS_CREDS, value: /etc/creds/nats.creds}
            - {name: PORTCULLIS_JWT_ISSUER, value: "https://idp.example/"}
            - {name: PORTCULLIS_JWKS_URL, value: "https://idp.example/jwks.json"}
            - {name: PORTCULLIS_POLICY_PUBLIC_KEYS, value: /etc/creds/policy-signing-key.pub}
            - {name: PORTCULLIS_VAULT_ADDR, value: "https://vault:8200"}
            - {name: PORTCULLIS_VAULT_AUTH, value: kubernetes}
            - {name: PORTCULLIS_VAULT_K8S_ROLE, value: dp}
            - {name: PORTCULLIS_EGRESS_ALLOW_HOSTS, value: eu.api.openai.com}
`
	roles := map[string]vaultRole{"dp": {ServiceAccounts: []string{"portcullis-dataplane"}, Namespaces: []string{"portcullis"}, Policies: []string{"portcullis-dataplane"}}}
	keys := configKeys(t)
	tests := []struct {
		name     string
		old, new string // replaced in good
		want     string // a problem containing this; "" for none
	}{
		{name: "the good manifest passes"},
		{name: "literal token", old: "PORTCULLIS_REGION, value: eu}", new: "PORTCULLIS_REGION, value: eu}\n            - {name: UPSTREAM_API_KEY, value: sk-canary}", want: "UPSTREAM_API_KEY has a literal value"},
		{name: "password from a config map", old: "PORTCULLIS_REGION, value: eu}", new: "PORTCULLIS_REGION, value: eu}\n            - {name: DB_PASSWORD, valueFrom: {configMapKeyRef: {name: c, key: k}}}", want: "DB_PASSWORD must come from valueFrom.secretKeyRef"},
		{name: "unknown key", old: "PORTCULLIS_REGION,", new: "PORTCULLIS_REGOIN,", want: "PORTCULLIS_REGOIN is not a configuration key of the dataplane"},
		{name: "file variable holding a secret", old: "- {name: PORTCULLIS_REGION, value: eu}", new: "- {name: PORTCULLIS_REGION, value: eu}\n            - {name: PORTCULLIS_VAULT_TOKEN_FILE, value: hvs.canary}", want: "a *_FILE variable holds an absolute path"},
		{name: "path on no volume", old: "/etc/creds/nats.creds", new: "/etc/elsewhere/nats.creds", want: "is on no volume mounted"},
		{name: "writable root", old: "readOnlyRootFilesystem: true", new: "readOnlyRootFilesystem: false", want: "readOnlyRootFilesystem must be true"},
		{name: "root user", old: "runAsNonRoot: true", new: "runAsNonRoot: false", want: "runAsNonRoot must be true"},
		{name: "capabilities kept", old: "drop: [ALL]", new: "drop: [NET_RAW]", want: `capabilities must drop ["ALL"]`},
		{name: "envFrom", old: "          env:\n", new: "          envFrom: [{configMapRef: {name: c}}]\n          env:\n", want: "envFrom hides variable names"},
		{name: "foreign image", old: "ghcr.io/portcullis-gw/dataplane:1", new: "busybox", want: "is not ghcr.io/portcullis-gw"},
		{name: "wrong service account", old: "serviceAccountName: portcullis-dataplane", new: "serviceAccountName: default", want: `service account "default" is not defined`},
		{name: "unknown Vault role", old: "K8S_ROLE, value: dp}", new: "K8S_ROLE, value: other}", want: `Vault role "other" is not created`},
		{name: "a value the binary refuses", old: "PORTCULLIS_REGION, value: eu}", new: "PORTCULLIS_REGION, value: \"e u\"}", want: `the dataplane refuses its configuration: PORTCULLIS_REGION="e u"`},
		{name: "incomplete Vault auth", old: "PORTCULLIS_VAULT_AUTH, value: kubernetes}", new: "PORTCULLIS_VAULT_AUTH, value: token}", want: "PORTCULLIS_VAULT_AUTH=token needs PORTCULLIS_VAULT_TOKEN_FILE"},
		{name: "secret with data", old: "kind: ServiceAccount\nmetadata: {name: portcullis-dataplane, namespace: portcullis}\n", new: "kind: ServiceAccount\nmetadata: {name: portcullis-dataplane, namespace: portcullis}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: k, namespace: portcullis}\nstringData: {openai-eu: sk-canary}\n", want: "a Secret in the repository carries data"},
		{name: "unknown kind", old: "kind: Deployment", new: "kind: CronJob", want: "kind CronJob is not known"},
		{name: "other namespace", old: "metadata: {name: dp, namespace: portcullis}", new: "metadata: {name: dp, namespace: default}", want: `namespace "default"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := good
			if tc.old != "" {
				if !strings.Contains(src, tc.old) {
					t.Fatalf("the good manifest has no %q", tc.old)
				}
				src = strings.Replace(src, tc.old, tc.new, 1)
			}
			ms, err := parseManifests("case.yaml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			c := &checker{keys: keys, roles: roles, load: loaders()}
			problems := c.check(ms)
			if tc.want == "" {
				if len(problems) > 0 {
					t.Fatalf("problems in the good manifest:\n%s", strings.Join(problems, "\n"))
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Fatalf("no problem contains %q; got:\n%s", tc.want, strings.Join(problems, "\n"))
			}
		})
	}
}

func TestVaultPolicies(t *testing.T) {
	dataplane, err := parsePolicy(readFile(t, "vault/dataplane.hcl"))
	if err != nil {
		t.Fatalf("dataplane.hcl: %v", err)
	}
	controlplane, err := parsePolicy(readFile(t, "vault/controlplane.hcl"))
	if err != nil {
		t.Fatalf("controlplane.hcl: %v", err)
	}
	for _, p := range readOnlyOnSecret(dataplane) {
		t.Errorf("dataplane.hcl: %s", p)
	}
	policies := map[string][]policyRule{"dataplane": dataplane, "controlplane": controlplane}
	none := []string(nil)
	tests := []struct {
		policy string
		path   string
		want   []string // exactly these capabilities
	}{
		{"dataplane", "secret/data/portcullis/openai-eu", []string{"read"}},
		{"dataplane", "secret/metadata/portcullis/openai-eu", []string{"read"}},
		{"dataplane", "secret/destroy/portcullis/openai-eu", none},
		{"dataplane", "secret/delete/portcullis/openai-eu", none},
		{"dataplane", "secret/undelete/portcullis/openai-eu", none},
		{"dataplane", "secret/data/portcullis-admin/openai", none},
		{"dataplane", "secret/data/other/openai", none},
		{"dataplane", "llm-provider/openai/creds/gateway", []string{"read"}},
		{"dataplane", "sys/leases/renew", []string{"update"}},
		{"dataplane", "sys/leases/revoke", none},
		{"dataplane", "auth/token/renew-self", []string{"update"}},
		{"dataplane", "auth/token/lookup-self", []string{"read"}},
		{"dataplane", "auth/token/create", none},
		{"dataplane", "sys/policies/acl/portcullis-dataplane", none},

		{"controlplane", "secret/data/portcullis/openai-eu", []string{"create", "update"}},
		{"controlplane", "secret/metadata/portcullis/openai-eu", []string{"read", "update", "patch"}},
		{"controlplane", "secret/destroy/portcullis/openai-eu", []string{"update"}},
		{"controlplane", "secret/delete/portcullis/openai-eu", none},
		{"controlplane", "secret/data/portcullis-admin/openai", []string{"read"}},
		{"controlplane", "secret/metadata/portcullis-admin/openai", none},
		{"controlplane", "secret/data/other/openai", none},
		{"controlplane", "auth/token/renew-self", []string{"update"}},
		{"controlplane", "auth/token/lookup-self", []string{"read"}},
		{"controlplane", "auth/token/create", none},
		{"controlplane", "sys/leases/revoke-prefix/llm-provider/openai/creds", []string{"update", "sudo"}},
		{"controlplane", "sys/leases/revoke-prefix/secret", none},
	}
	for _, tc := range tests {
		t.Run(tc.policy+" "+tc.path, func(t *testing.T) {
			got, err := capsFor(policies[tc.policy], tc.path)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tc.want))) {
				t.Fatalf("%s.hcl grants %v on %s, want %v", tc.policy, got, tc.path, tc.want)
			}
		})
	}
}

// TestPolicyChecksCatchViolations proves the policy parser and the read-only check
// can fail.
func TestPolicyChecksCatchViolations(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		parse   string // a parse error containing this
		problem string // a readOnlyOnSecret problem containing this
	}{
		{name: "write on the data path", src: `path "secret/data/portcullis/*" { capabilities = ["read", "update"] }`, problem: `grants "update"`},
		{name: "write through a broad glob", src: `path "secret/*" { capabilities = ["create"] }`, problem: `grants "create"`},
		{name: "write through a leading segment wildcard", src: `path "+/data/*" { capabilities = ["patch"] }`, problem: `grants "patch"`},
		{name: "write on everything", src: `path "*" { capabilities = ["delete"] }`, problem: `grants "delete"`},
		{name: "destroy", src: `path "secret/destroy/portcullis/*" { capabilities = ["update"] }`, problem: `grants "update"`},
		{name: "unknown capability", src: `path "secret/data/*" { capabilities = ["write"] }`, parse: "unknown capability"},
		{name: "an unread setting", src: `path "secret/data/*" { capabilities = ["read"] allowed_parameters = {} }`, parse: "unparsed policy text"},
		{name: "a wildcard inside", src: `path "secret/*/portcullis" { capabilities = ["read"] }`, parse: "only allowed at the end"},
		{name: "duplicate path", src: "path \"a\" { capabilities = [\"read\"] }\npath \"a\" { capabilities = [\"read\"] }", parse: "appears twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := parsePolicy(tc.src)
			if tc.parse != "" {
				if err == nil || !strings.Contains(err.Error(), tc.parse) {
					t.Fatalf("parse error %v, want one containing %q", err, tc.parse)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			problems := readOnlyOnSecret(rules)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.problem) }) {
				t.Fatalf("no problem contains %q; got %v", tc.problem, problems)
			}
		})
	}
	// Outside secret/, a write is the data plane's business (lease renewal).
	rules, err := parsePolicy(`path "sys/leases/renew" { capabilities = ["update"] }`)
	if err != nil {
		t.Fatal(err)
	}
	if p := readOnlyOnSecret(rules); len(p) > 0 {
		t.Fatalf("lease renewal flagged: %v", p)
	}
}

// TestReadmeListsEveryFile keeps deploy/README.md an index of the folder.
func TestReadmeListsEveryFile(t *testing.T) {
	readme := readFile(t, "README.md")
	n := 0
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(deployDir, p)
		rel = filepath.ToSlash(rel)
		if rel == "README.md" {
			return nil
		}
		n++
		if !strings.Contains(readme, "`"+rel+"`") {
			t.Errorf("deploy/README.md does not list `%s`", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("found no files under deploy/")
	}
}
