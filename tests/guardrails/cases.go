package guardrails

import (
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
)

// CasesFiles are the hand-written part of the evaluation set: texts written one by
// one rather than from templates, in the phrasings of public prompt-injection and
// jailbreak collections, real configuration and log formats, and hard negatives.
// cases.jsonl was written with the detectors; cases-independent.jsonl by a
// separate author who never saw them (its first scores are in docs/guardrails.md).
// Secret values are slots ({{AWS_KEY}}) that ReadCases fills, so that the files
// hold nothing a secret scanner would take for a secret.
var CasesFiles = []string{"testdata/cases.jsonl", "testdata/cases-independent.jsonl"}

// CasesSeed draws the values of the cases' slots.
const CasesSeed = 20261208

var slotRe = regexp.MustCompile(`\{\{([A-Z_]+)\}\}`)

// ReadCases reads a cases file and fills its slots with values drawn with seed;
// an unknown slot is an error.
func ReadCases(path string, seed uint64) ([]Item, error) {
	items, err := ReadItems(path)
	if err != nil {
		return nil, err
	}
	g := &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for i := range items {
		var bad error
		items[i].Text = slotRe.ReplaceAllStringFunc(items[i].Text, func(m string) string {
			v, ok := g.slot(slotRe.FindStringSubmatch(m)[1])
			if !ok && bad == nil {
				bad = fmt.Errorf("%s: unknown slot %s", items[i].ID, m)
			}
			return v
		})
		if bad != nil {
			return nil, bad
		}
	}
	return items, nil
}

// slot draws a value for a named slot.
func (g *gen) slot(name string) (string, bool) {
	switch name {
	case "AWS_KEY":
		return g.pick("AKIA", "ASIA") + g.chars(base32Set, 16), true
	case "AWS_SECRET":
		return g.chars(alnumSet+"/+", 40), true
	case "GITHUB_TOKEN":
		return g.pick("ghp_", "gho_", "ghs_") + g.chars(alnumSet, 36), true
	case "OPENAI_KEY":
		return g.pick("sk-proj-", "sk-svcacct-") + g.chars(alnumSet+"_-", 74) + "T3BlbkFJ" + g.chars(alnumSet+"_-", 74), true
	case "ANTHROPIC_KEY":
		return "sk-ant-api03-" + g.chars(alnumSet+"_-", 93) + "AA", true
	case "SLACK_TOKEN":
		return fmt.Sprintf("xoxb-%s-%s-%s", g.chars(digitSet, 12), g.chars(digitSet, 13), g.chars(alnumSet, 24)), true
	case "STRIPE_KEY":
		return g.pick("sk_live_", "rk_live_") + g.chars(alnumSet, 24+g.r.IntN(70)), true
	case "GCP_KEY":
		return "AIza" + g.chars(alnumSet+"_-", 35), true
	case "JWT":
		return "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9." + base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(
			`{"sub":"%d","exp":%d,"scope":"read write"}`, g.r.IntN(1e9), 1.7e9+g.r.IntN(1e8)))) + "." + g.chars(alnumSet+"_-", 86), true
	case "PRIVATE_KEY":
		return privateKeyBlock("OPENSSH", g.chars(alnumSet+"+/", 70), g.chars(alnumSet+"+/", 70), g.chars(alnumSet+"+/", 30)), true
	case "PASSWORD":
		return g.pick("Tr0ub4dor", "Kx9#mP2v", "Hafen2024", "blue-Otter-77", "Qw!8zLp0s") + g.chars(alnumSet, 4) + g.pick("!", "#", "%", "?"), true
	}
	return "", false
}

// pemArmor is a PEM block's dashes. The generated keys are built from parts, so
// that no source file holds anything a secret scanner would take for a key.
const pemArmor = "-----"

// privateKeyBlock is a PEM private key block of kind ("RSA", "OPENSSH") around the
// random body lines: the shape the detectors look for, with nothing of a real key.
func privateKeyBlock(kind string, body ...string) string {
	label := kind + " PRIVATE " + "KEY"
	return pemArmor + "BEGIN " + label + pemArmor + "\n" + strings.Join(body, "\n") + "\n" + pemArmor + "END " + label + pemArmor
}

// awsExampleKeyID is the access key id AWS's own documentation uses as an example
// (a hard negative: it is not a credential), built from parts.
const awsExampleKeyID = "AKIA" + "IOSFODNN7" + "EXAMPLE"
