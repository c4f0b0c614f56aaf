package deploy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// vaultCapabilities are the capabilities a Vault policy may name.
var vaultCapabilities = []string{"create", "read", "update", "patch", "delete", "list", "sudo", "deny", "subscribe"}

// writeCapabilities change or remove a secret, or escalate.
var writeCapabilities = []string{"create", "update", "patch", "delete", "sudo"}

// policyRule is one `path "…" { capabilities = [...] }` block of a Vault policy.
type policyRule struct {
	Path  string
	Caps  []string
	match *regexp.Regexp // the paths the rule applies to, under Vault's glob rules
}

var (
	policyComment = regexp.MustCompile(`(?m)^[ \t]*(#|//).*$`)
	policyBlock   = regexp.MustCompile(`^\s*path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}`)
	policyCap     = regexp.MustCompile(`^"([a-z]+)"$`)
)

// parsePolicy reads the path blocks of a Vault policy. It understands only whole-line
// comments and blocks holding nothing but a capabilities list; anything else is an
// error, so no rule can slip past the checks unread.
func parsePolicy(src string) ([]policyRule, error) {
	rest := policyComment.ReplaceAllString(src, "")
	var rules []policyRule
	seen := map[string]bool{}
	for strings.TrimSpace(rest) != "" {
		m := policyBlock.FindStringSubmatch(rest)
		if m == nil {
			return nil, fmt.Errorf("unparsed policy text at %q", firstLine(rest))
		}
		rest = rest[len(m[0]):]
		path := m[1]
		if seen[path] {
			return nil, fmt.Errorf("path %q appears twice", path)
		}
		seen[path] = true
		re, err := vaultGlob(path)
		if err != nil {
			return nil, err
		}
		var caps []string
		for _, c := range strings.Split(m[2], ",") {
			c = strings.TrimSpace(c)
			if c == "" {
				continue // a trailing comma
			}
			cm := policyCap.FindStringSubmatch(c)
			if cm == nil || !slices.Contains(vaultCapabilities, cm[1]) {
				return nil, fmt.Errorf("path %q: unknown capability %s", path, c)
			}
			caps = append(caps, cm[1])
		}
		if len(caps) == 0 {
			return nil, fmt.Errorf("path %q grants no capability", path)
		}
		rules = append(rules, policyRule{Path: path, Caps: caps, match: re})
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("no path blocks")
	}
	return rules, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// vaultGlob compiles a policy path: "+" stands for exactly one path segment, and a
// trailing "*" makes the rest a prefix. Vault allows "*" nowhere else.
func vaultGlob(path string) (*regexp.Regexp, error) {
	body, prefix := strings.CutSuffix(path, "*")
	if strings.Contains(body, "*") {
		return nil, fmt.Errorf("path %q: \"*\" is only allowed at the end", path)
	}
	segs := strings.Split(body, "/")
	for i, s := range segs {
		switch {
		case s == "+":
			segs[i] = `[^/]+`
		case strings.Contains(s, "+"):
			return nil, fmt.Errorf("path %q: \"+\" must be a whole segment", path)
		default:
			segs[i] = regexp.QuoteMeta(s)
		}
	}
	expr := "^" + strings.Join(segs, "/")
	if prefix {
		expr += ".*"
	}
	return regexp.MustCompile(expr + "$"), nil
}

// literalPrefix is the part of a rule's path before its first wildcard.
func (r policyRule) literalPrefix() string {
	if i := strings.IndexAny(r.Path, "+*"); i >= 0 {
		return r.Path[:i]
	}
	return r.Path
}

// capsFor returns the capabilities the policy grants on path. More than one matching
// rule is an error: Vault would then pick the most specific one by rules subtle
// enough that our policies keep to one rule per path instead.
func capsFor(rules []policyRule, path string) ([]string, error) {
	var hits []policyRule
	for _, r := range rules {
		if r.match.MatchString(path) {
			hits = append(hits, r)
		}
	}
	switch len(hits) {
	case 0:
		return nil, nil
	case 1:
		return hits[0].Caps, nil
	}
	var names []string
	for _, h := range hits {
		names = append(names, h.Path)
	}
	return nil, fmt.Errorf("%s is matched by several rules: %s", path, strings.Join(names, ", "))
}

// readOnlyOnSecret reports every rule that could grant a write on the KV mount
// "secret/" (its data, metadata, delete and destroy endpoints): a rule whose literal
// prefix lies inside secret/, or is a prefix of it ("*", "se*", "+/data/*").
func readOnlyOnSecret(rules []policyRule) []string {
	var problems []string
	for _, r := range rules {
		p := r.literalPrefix()
		if !strings.HasPrefix(p, "secret/") && !strings.HasPrefix("secret/", p) {
			continue
		}
		for _, c := range r.Caps {
			if slices.Contains(writeCapabilities, c) {
				problems = append(problems, fmt.Sprintf("path %q grants %q: a data plane may only read under secret/", r.Path, c))
			}
		}
	}
	return problems
}
