package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// manifest is one Kubernetes object of a YAML file, with only the fields the checks
// read.
type manifest struct {
	File string `json:"-"` // relative to deploy/
	Doc  int    `json:"-"` // 1-based position in the file

	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   objectMeta      `json:"metadata"`
	Spec       json.RawMessage `json:"spec"`
	Data       map[string]any  `json:"data"`
	StringData map[string]any  `json:"stringData"`
}

type objectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// workloadSpec is the spec of a Deployment, StatefulSet, DaemonSet or Job.
type workloadSpec struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	Template struct {
		Metadata objectMeta `json:"metadata"`
		Spec     podSpec    `json:"spec"`
	} `json:"template"`
}

type podSpec struct {
	ServiceAccountName string           `json:"serviceAccountName"`
	SecurityContext    *securityContext `json:"securityContext"`
	InitContainers     []container      `json:"initContainers"`
	Containers         []container      `json:"containers"`
	Volumes            []struct {
		Name string `json:"name"`
	} `json:"volumes"`
}

type securityContext struct {
	RunAsNonRoot             *bool  `json:"runAsNonRoot"`
	RunAsUser                *int64 `json:"runAsUser"`
	ReadOnlyRootFilesystem   *bool  `json:"readOnlyRootFilesystem"`
	AllowPrivilegeEscalation *bool  `json:"allowPrivilegeEscalation"`
	Privileged               *bool  `json:"privileged"`
	Capabilities             *struct {
		Add  []string `json:"add"`
		Drop []string `json:"drop"`
	} `json:"capabilities"`
}

type container struct {
	Name         string            `json:"name"`
	Image        string            `json:"image"`
	Env          []envVar          `json:"env"`
	EnvFrom      []json.RawMessage `json:"envFrom"`
	VolumeMounts []struct {
		Name      string `json:"name"`
		MountPath string `json:"mountPath"`
	} `json:"volumeMounts"`
	Ports []struct {
		Name string `json:"name"`
	} `json:"ports"`
	SecurityContext *securityContext `json:"securityContext"`
}

type envVar struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	ValueFrom *struct {
		SecretKeyRef *struct {
			Name string `json:"name"`
			Key  string `json:"key"`
		} `json:"secretKeyRef"`
	} `json:"valueFrom"`
}

type serviceSpec struct {
	Selector map[string]string `json:"selector"`
	Ports    []struct {
		Name       string          `json:"name"`
		TargetPort json.RawMessage `json:"targetPort"`
	} `json:"ports"`
}

// Kinds the checks know. A workload kind's pod template is checked; the others hold
// no container. Any other kind fails the test until the checks learn it, so that no
// container escapes them.
var (
	workloadKinds  = []string{"Deployment", "StatefulSet", "DaemonSet", "Job"}
	containerless  = []string{"Namespace", "ServiceAccount", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "NetworkPolicy", "Ingress", "HorizontalPodAutoscaler"}
	docSeparator   = regexp.MustCompile(`(?m)^---[ \t]*$`)
	portcullisRepo = regexp.MustCompile(`^ghcr\.io/portcullis-gw/(dataplane|controlplane):`)
)

// namespace is where every Portcullis object lives.
const namespace = "portcullis"

// The service account and Vault policy of each binary.
var (
	serviceAccountOf = map[string]string{"dataplane": "portcullis-dataplane", "controlplane": "portcullis-controlplane"}
	vaultPolicyOf    = map[string]string{"dataplane": "portcullis-dataplane", "controlplane": "portcullis-controlplane"}
)

// agentSecretsDir is where the Vault Agent Injector mounts its shared volume.
const agentSecretsDir = "/vault/secrets"

// parseManifests splits a YAML file into its documents and decodes each.
func parseManifests(file string, data []byte) ([]manifest, error) {
	var out []manifest
	for i, doc := range docSeparator.Split(string(data), -1) {
		j, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i+1, err)
		}
		if t := bytes.TrimSpace(j); len(t) == 0 || string(t) == "null" {
			continue // only comments
		}
		var m manifest
		if err := json.Unmarshal(j, &m); err != nil {
			return nil, fmt.Errorf("%s document %d: %w", file, i+1, err)
		}
		m.File, m.Doc = file, i+1
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no objects", file)
	}
	return out, nil
}

func (m manifest) String() string {
	return fmt.Sprintf("%s: %s/%s", m.File, m.Kind, m.Metadata.Name)
}

// vaultRole is a Kubernetes auth role as deploy/vault/README.md creates it.
type vaultRole struct {
	ServiceAccounts, Namespaces, Policies []string
}

var (
	shellContinuation = regexp.MustCompile(`\\\n[ \t]*`)
	k8sRoleWrite      = regexp.MustCompile(`(?m)^vault write auth/kubernetes/role/([A-Za-z0-9_-]+)[ \t]+(.*)$`)
)

// parseVaultRoles reads the `vault write auth/kubernetes/role/<name> k=v ...` commands
// of the Vault README.
func parseVaultRoles(readme string) map[string]vaultRole {
	roles := map[string]vaultRole{}
	joined := shellContinuation.ReplaceAllString(readme, " ")
	for _, m := range k8sRoleWrite.FindAllStringSubmatch(joined, -1) {
		var r vaultRole
		for _, field := range strings.Fields(m[2]) {
			k, v, _ := strings.Cut(field, "=")
			list := strings.Split(v, ",")
			switch k {
			case "bound_service_account_names":
				r.ServiceAccounts = list
			case "bound_service_account_namespaces":
				r.Namespaces = list
			case "token_policies", "policies":
				r.Policies = list
			}
		}
		roles[m[1]] = r
	}
	return roles
}

// checker holds what the manifests are checked against.
type checker struct {
	// keys lists the PORTCULLIS_* variables each binary reads ("dataplane",
	// "controlplane").
	keys map[string]map[string]bool
	// pending are variables the manifests may use before the binaries read them.
	pending map[string]bool
	// roles are the Vault Kubernetes auth roles that deploy/vault/README.md creates.
	roles map[string]vaultRole
	// load runs a binary's configuration loader (defaults, environment through
	// getenv, validation) and returns what it refuses; nil skips that check.
	load map[string]func(getenv func(string) string) error

	// pendingUse records, per pending key, the binaries whose manifests use it.
	pendingUse map[string]map[string]bool
}

// check returns every problem of the manifests, each naming its file and object.
func (c *checker) check(ms []manifest) []string {
	if c.pendingUse == nil {
		c.pendingUse = map[string]map[string]bool{}
	}
	var problems []string
	add := func(m manifest, format string, args ...any) {
		problems = append(problems, m.String()+": "+fmt.Sprintf(format, args...))
	}
	serviceAccounts := map[string]bool{}
	var podLabels []map[string]string
	podPorts := map[string]bool{}
	for _, m := range ms {
		if m.Kind == "ServiceAccount" {
			serviceAccounts[m.Metadata.Name] = true
		}
	}
	for _, m := range ms {
		if m.APIVersion == "" || m.Kind == "" || m.Metadata.Name == "" {
			add(m, "document %d needs apiVersion, kind and metadata.name", m.Doc)
			continue
		}
		if m.Kind != "Namespace" && m.Metadata.Namespace != namespace {
			add(m, "namespace %q, want %q", m.Metadata.Namespace, namespace)
		}
		switch {
		case m.Kind == "Secret":
			if len(m.Data) > 0 || len(m.StringData) > 0 {
				add(m, "a Secret in the repository carries data; create secrets out of band (kubectl create secret --from-file)")
			}
		case slices.Contains(workloadKinds, m.Kind):
			var w workloadSpec
			if err := json.Unmarshal(m.Spec, &w); err != nil {
				add(m, "spec: %v", err)
				continue
			}
			podLabels = append(podLabels, w.Template.Metadata.Labels)
			for _, ctr := range append(slices.Clone(w.Template.Spec.InitContainers), w.Template.Spec.Containers...) {
				for _, p := range ctr.Ports {
					if p.Name != "" {
						podPorts[p.Name] = true
					}
				}
			}
			problems = append(problems, c.checkWorkload(m, w, serviceAccounts)...)
		case slices.Contains(containerless, m.Kind):
		default:
			add(m, "kind %s is not known to tests/deploy: teach it where the kind's containers are", m.Kind)
		}
	}
	for _, m := range ms {
		if m.Kind != "Service" {
			continue
		}
		var s serviceSpec
		if err := json.Unmarshal(m.Spec, &s); err != nil {
			add(m, "spec: %v", err)
			continue
		}
		if len(s.Selector) == 0 {
			add(m, "has no selector")
		} else if !slices.ContainsFunc(podLabels, func(l map[string]string) bool { return subset(s.Selector, l) }) {
			add(m, "selector %v matches no pod template here", s.Selector)
		}
		for _, p := range s.Ports {
			var name string
			if json.Unmarshal(p.TargetPort, &name) == nil && name != "" && !podPorts[name] {
				add(m, "targetPort %q is no container's named port", name)
			}
		}
	}
	return problems
}

func (c *checker) checkWorkload(m manifest, w workloadSpec, serviceAccounts map[string]bool) []string {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, m.String()+": "+fmt.Sprintf(format, args...))
	}
	pod := w.Template.Spec
	if len(w.Selector.MatchLabels) == 0 || !subset(w.Selector.MatchLabels, w.Template.Metadata.Labels) {
		add("selector %v does not match the pod template's labels %v", w.Selector.MatchLabels, w.Template.Metadata.Labels)
	}
	if pod.ServiceAccountName == "" {
		add("no serviceAccountName")
	} else if !serviceAccounts[pod.ServiceAccountName] {
		add("service account %q is not defined in deploy/k8s", pod.ServiceAccountName)
	}
	volumes := map[string]bool{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
	}
	ann := w.Template.Metadata.Annotations
	agent := ann["vault.hashicorp.com/agent-inject"] == "true"
	if agent {
		problems = append(problems, c.checkRole(m, ann["vault.hashicorp.com/role"], "the Vault agent", pod.ServiceAccountName, "")...)
	}
	if len(pod.Containers) == 0 {
		add("no containers")
	}
	for _, ctr := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		cadd := func(format string, args ...any) {
			add("container %s: %s", ctr.Name, fmt.Sprintf(format, args...))
		}
		im := portcullisRepo.FindStringSubmatch(ctr.Image)
		if im == nil {
			cadd("image %q is not ghcr.io/portcullis-gw/{dataplane,controlplane}:<tag>", ctr.Image)
			continue
		}
		binary := im[1]
		if sa := serviceAccountOf[binary]; pod.ServiceAccountName != sa {
			cadd("a %s runs as service account %q, want %q (Vault's roles bind that one)", binary, pod.ServiceAccountName, sa)
		}
		for _, p := range securityProblems(pod.SecurityContext, ctr.SecurityContext) {
			cadd("%s", p)
		}
		if len(ctr.EnvFrom) > 0 {
			cadd("envFrom hides variable names from these checks; list each variable under env")
		}
		var mounts []string
		for _, vm := range ctr.VolumeMounts {
			if !volumes[vm.Name] {
				cadd("volume mount %q names no volume of the pod", vm.Name)
			}
			mounts = append(mounts, vm.MountPath)
		}
		if agent && (ann["vault.hashicorp.com/agent-inject-containers"] == "" ||
			slices.Contains(strings.Split(ann["vault.hashicorp.com/agent-inject-containers"], ","), ctr.Name)) {
			mounts = append(mounts, agentSecretsDir)
		}
		env := map[string]string{}
		for _, e := range ctr.Env {
			env[e.Name] = e.Value
			for _, p := range c.envProblems(binary, e, mounts) {
				cadd("%s", p)
			}
		}
		problems = append(problems, c.checkVaultEnv(m, ctr.Name, env, pod.ServiceAccountName, binary)...)
		for _, p := range c.refusals(binary, ctr.Env) {
			cadd("%s", p)
		}
	}
	return problems
}

// secretStandIns stand in for values a manifest takes from a Secret, so that the
// binary's validation can run; any other Secret value stands in as "stand-in".
var secretStandIns = map[string]string{
	"PORTCULLIS_DATABASE_URL": "postgres://portcullis@postgres.example:5432/portcullis",
}

var refusedKey = regexp.MustCompile(`(PORTCULLIS_[A-Z0-9_]+)="`)

// refusals runs the binary's own configuration loader on the container's environment
// and returns each problem it reports, except those about files: a path names a file
// of the pod, which is not on this machine.
func (c *checker) refusals(binary string, env []envVar) []string {
	load := c.load[binary]
	if load == nil {
		return nil
	}
	vals := map[string]string{}
	for _, e := range env {
		switch {
		case e.ValueFrom == nil:
			vals[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil && secretStandIns[e.Name] != "":
			vals[e.Name] = secretStandIns[e.Name]
		default:
			vals[e.Name] = "stand-in"
		}
	}
	err := load(func(k string) string { return vals[k] })
	if err == nil {
		return nil
	}
	var problems []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if m := refusedKey.FindStringSubmatch(line); m != nil && strings.HasPrefix(vals[m[1]], "/") {
			continue
		}
		line = strings.TrimPrefix(line, binary+" config: ")
		problems = append(problems, "the "+binary+" refuses its configuration: "+line)
	}
	return problems
}

// securityProblems checks the effective security context of a container: its own,
// falling back to the pod's for the fields a pod can set.
func securityProblems(pod, ctr *securityContext) []string {
	if pod == nil {
		pod = &securityContext{}
	}
	if ctr == nil {
		ctr = &securityContext{}
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	var problems []string
	nonRoot := ctr.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.RunAsNonRoot
	}
	if !isTrue(nonRoot) {
		problems = append(problems, "runAsNonRoot must be true")
	}
	user := ctr.RunAsUser
	if user == nil {
		user = pod.RunAsUser
	}
	if user != nil && *user == 0 {
		problems = append(problems, "runAsUser must not be 0")
	}
	if !isTrue(ctr.ReadOnlyRootFilesystem) {
		problems = append(problems, "readOnlyRootFilesystem must be true")
	}
	if ctr.AllowPrivilegeEscalation == nil || *ctr.AllowPrivilegeEscalation {
		problems = append(problems, "allowPrivilegeEscalation must be false")
	}
	if isTrue(ctr.Privileged) {
		problems = append(problems, "must not be privileged")
	}
	if ctr.Capabilities == nil || !slices.Contains(ctr.Capabilities.Drop, "ALL") {
		problems = append(problems, `capabilities must drop ["ALL"]`)
	} else if len(ctr.Capabilities.Add) > 0 {
		problems = append(problems, fmt.Sprintf("capabilities must add none, not %v", ctr.Capabilities.Add))
	}
	return problems
}

// secretish reports whether an environment variable's name says it holds a secret.
func secretish(name string) bool {
	n := strings.ToUpper(name)
	if strings.Contains(n, "PUBLIC_KEY") { // a public key is no secret
		return false
	}
	if strings.HasSuffix(n, "_DIR") { // a directory may hold secrets; its path is none
		return false
	}
	for _, w := range []string{"KEY", "TOKEN", "SECRET", "PASSWORD"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// envProblems checks one environment variable of a container running binary, whose
// volumes are mounted at mounts.
func (c *checker) envProblems(binary string, e envVar, mounts []string) []string {
	var problems []string
	isFile := strings.HasSuffix(e.Name, "_FILE")
	if secretish(e.Name) && !isFile {
		switch {
		case e.ValueFrom == nil && e.Value != "":
			problems = append(problems, fmt.Sprintf("%s has a literal value; a secret comes from valueFrom.secretKeyRef or a file", e.Name))
		case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef == nil:
			problems = append(problems, fmt.Sprintf("%s must come from valueFrom.secretKeyRef", e.Name))
		}
	}
	if isFile && e.ValueFrom == nil && !strings.HasPrefix(e.Value, "/") {
		problems = append(problems, fmt.Sprintf("%s=%q: a *_FILE variable holds an absolute path, never the secret itself", e.Name, e.Value))
	}
	// The root filesystem is read-only: every path the binary reads or writes comes
	// from a volume.
	if e.ValueFrom == nil && strings.HasPrefix(e.Value, "/") && !slices.ContainsFunc(mounts, func(mp string) bool { return under(e.Value, mp) }) {
		problems = append(problems, fmt.Sprintf("%s=%s is on no volume mounted in the container", e.Name, e.Value))
	}
	if strings.HasPrefix(e.Name, "PORTCULLIS_") && !c.keys[binary][e.Name] {
		if c.pending[e.Name] {
			if c.pendingUse[e.Name] == nil {
				c.pendingUse[e.Name] = map[string]bool{}
			}
			c.pendingUse[e.Name][binary] = true
		} else {
			problems = append(problems, fmt.Sprintf("%s is not a configuration key of the %s (see its -h)", e.Name, binary))
		}
	}
	return problems
}

// checkVaultEnv checks that a container's Vault settings are complete and that its
// Kubernetes auth role binds its service account to its binary's policy.
func (c *checker) checkVaultEnv(m manifest, ctrName string, env map[string]string, serviceAccount, binary string) []string {
	auth, ok := env["PORTCULLIS_VAULT_AUTH"]
	_, hasAddr := env["PORTCULLIS_VAULT_ADDR"]
	if !ok && !hasAddr {
		return nil // no Vault: the file key source
	}
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: container %s: %s", m, ctrName, fmt.Sprintf(format, args...)))
	}
	if !hasAddr {
		add("PORTCULLIS_VAULT_AUTH without PORTCULLIS_VAULT_ADDR")
	}
	need := map[string][]string{
		"token":      {"PORTCULLIS_VAULT_TOKEN_FILE"},
		"approle":    {"PORTCULLIS_VAULT_ROLE_ID", "PORTCULLIS_VAULT_SECRET_ID_FILE"},
		"kubernetes": {"PORTCULLIS_VAULT_K8S_ROLE"},
	}
	keys, known := need[auth]
	if !known {
		add("PORTCULLIS_VAULT_AUTH=%q, want one of %v", auth, slices.Sorted(maps.Keys(need)))
	}
	for _, k := range keys {
		if _, ok := env[k]; !ok {
			add("PORTCULLIS_VAULT_AUTH=%s needs %s", auth, k)
		}
	}
	if auth == "kubernetes" {
		problems = append(problems, c.checkRole(m, env["PORTCULLIS_VAULT_K8S_ROLE"], "container "+ctrName, serviceAccount, binary)...)
	}
	return problems
}

// checkRole checks that the Vault role exists in deploy/vault/README.md, binds
// serviceAccount in the namespace, and grants binary's policy (any Portcullis policy
// when binary is "").
func (c *checker) checkRole(m manifest, role, who, serviceAccount, binary string) []string {
	var problems []string
	add := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: %s: %s", m, who, fmt.Sprintf(format, args...)))
	}
	r, ok := c.roles[role]
	if !ok {
		add("Vault role %q is not created in deploy/vault/README.md", role)
		return problems
	}
	if !slices.Contains(r.ServiceAccounts, serviceAccount) || !slices.Contains(r.Namespaces, namespace) {
		add("Vault role %q binds %v in %v, not %s in %s", role, r.ServiceAccounts, r.Namespaces, serviceAccount, namespace)
	}
	want := vaultPolicyOf[binary]
	if binary == "" {
		want = vaultPolicyOf[binaryOfServiceAccount(serviceAccount)]
	}
	if want == "" || len(r.Policies) != 1 || r.Policies[0] != want {
		add("Vault role %q grants %v, want exactly [%s]", role, r.Policies, want)
	}
	return problems
}

func binaryOfServiceAccount(sa string) string {
	for b, s := range serviceAccountOf {
		if s == sa {
			return b
		}
	}
	return ""
}

// under reports whether path p lies in directory dir (or is it).
func under(p, dir string) bool {
	p, dir = path.Clean(p), path.Clean(dir)
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
