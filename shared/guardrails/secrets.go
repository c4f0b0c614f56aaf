package guardrails

import (
	"math"
	"regexp"
	"strings"
)

// Secret types.
const (
	TypeAWSKey          = "aws_key"
	TypeGitHubToken     = "github_token"
	TypeOpenAIKey       = "openai_key"
	TypeAnthropicKey    = "anthropic_key"
	TypeSlackToken      = "slack_token"
	TypeStripeKey       = "stripe_key"
	TypeGoogleAPIKey    = "google_api_key"
	TypePrivateKey      = "private_key"
	TypeJWT             = "jwt"
	TypeGenericPassword = "generic_password"
)

// secretRule is one secret pattern: the literals any match contains (the
// prefilter; lower case), the expression, which submatch is the secret (0 for the
// whole match), and the least Shannon entropy (bits per byte) the secret must have.
type secretRule struct {
	id       string
	typ      string
	keywords []string
	re       *regexp.Regexp
	group    int
	entropy  float64
	// check, if set, must accept the secret too.
	check func(string) bool
	// around bounds where a match can lie from a keyword: from around[0] bytes
	// before its start to around[1] after its end (-1: the end of the text). The
	// expression runs only there, so text with a keyword in it is not searched
	// whole by an expression without a literal prefix.
	around [2]int
}

// end is the boundary after a token: a byte that cannot continue it, or the end.
const end = `(?:[^A-Za-z0-9_\-]|$)`

// secretRules derive from gitleaks v8.30.1's config/gitleaks.toml
// (https://github.com/gitleaks/gitleaks, MIT License, Copyright (c) 2019 Zachary
// Rice): the rules aws-access-token, github-pat, github-oauth, github-app-token,
// github-fine-grained-pat, openai-api-key, anthropic-api-key,
// anthropic-admin-api-key, slack-bot-token, slack-user-token, slack-app-token,
// slack-webhook-url, stripe-access-token, gcp-api-key, private-key and jwt, with
// their keywords and entropy floors. Two changes: a token may end at any byte that
// cannot continue it (gitleaks wants a quote, space or ';', and so misses
// "KEY=sk-…," in prose), and a private key block may be cut before its END line (a
// pasted key often is). The last three rules are Portcullis's own: the AWS secret
// access key beside its name, passwords after their name, and the password of a
// connection URL. gitleaks is a maintained, widely used rule set whose patterns are
// RE2 (Go's regexp) already; taking them as data, not the module, keeps its CLI
// dependencies out of the data plane.
var secretRules = []secretRule{
	{id: "aws-access-token", typ: TypeAWSKey, keywords: []string{"a3t", "akia", "asia", "abia", "acca"},
		re: regexp.MustCompile(`\b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b`), group: 1, entropy: 3,
		check: func(k string) bool { return !strings.HasSuffix(k, "EXAMPLE") }, around: [2]int{1, 24}}, // gitleaks' allowlist: AWS's documentation key
	{id: "aws-secret-access-key", typ: TypeAWSKey, keywords: []string{"secret_access_key", "secretaccesskey", "secret-access-key"},
		re: regexp.MustCompile(`(?i)aws_?secret_?access_?key["']?\s{0,16}[:=]\s{0,16}["']?([A-Za-z0-9/+=]{40})` + end), group: 1, entropy: 3.5, around: [2]int{8, 128}},
	{id: "github-pat", typ: TypeGitHubToken, keywords: []string{"ghp_"}, re: regexp.MustCompile(`ghp_[0-9a-zA-Z]{36}`), entropy: 3, around: [2]int{0, 40}},
	{id: "github-oauth", typ: TypeGitHubToken, keywords: []string{"gho_"}, re: regexp.MustCompile(`gho_[0-9a-zA-Z]{36}`), entropy: 3, around: [2]int{0, 40}},
	{id: "github-app-token", typ: TypeGitHubToken, keywords: []string{"ghu_", "ghs_"}, re: regexp.MustCompile(`(?:ghu|ghs)_[0-9a-zA-Z]{36}`), entropy: 3, around: [2]int{0, 40}},
	{id: "github-fine-grained-pat", typ: TypeGitHubToken, keywords: []string{"github_pat_"}, re: regexp.MustCompile(`github_pat_\w{82}`), entropy: 3, around: [2]int{0, 100}},
	{id: "openai-api-key", typ: TypeOpenAIKey, keywords: []string{"t3blbkfj"},
		re: regexp.MustCompile(`\b(sk-(?:proj|svcacct|admin)-(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})T3BlbkFJ(?:[A-Za-z0-9_-]{74}|[A-Za-z0-9_-]{58})|sk-[a-zA-Z0-9]{20}T3BlbkFJ[a-zA-Z0-9]{20})` + end), group: 1, entropy: 3, around: [2]int{96, 96}},
	{id: "anthropic-api-key", typ: TypeAnthropicKey, keywords: []string{"sk-ant-api03", "sk-ant-admin01"},
		re: regexp.MustCompile(`\b(sk-ant-(?:api03|admin01)-[a-zA-Z0-9_\-]{93}AA)` + end), group: 1, around: [2]int{1, 128}},
	{id: "slack-bot-token", typ: TypeSlackToken, keywords: []string{"xoxb"}, re: regexp.MustCompile(`xoxb-[0-9]{10,13}-[0-9]{10,13}[a-zA-Z0-9-]*`), entropy: 3, around: [2]int{0, -1}},
	{id: "slack-user-token", typ: TypeSlackToken, keywords: []string{"xoxp-", "xoxe-"}, re: regexp.MustCompile(`xox[pe](?:-[0-9]{10,13}){3}-[a-zA-Z0-9-]{28,34}`), entropy: 2, around: [2]int{0, 128}},
	{id: "slack-app-token", typ: TypeSlackToken, keywords: []string{"xapp"}, re: regexp.MustCompile(`(?i)xapp-\d-[A-Z0-9]+-\d+-[a-z0-9]+`), entropy: 2, around: [2]int{0, -1}},
	{id: "slack-webhook-url", typ: TypeSlackToken, keywords: []string{"hooks.slack.com"},
		re: regexp.MustCompile(`(?:https?://)?hooks.slack.com/(?:services|workflows|triggers)/[A-Za-z0-9+/]{43,56}`), around: [2]int{8, 80}},
	{id: "stripe-access-token", typ: TypeStripeKey, keywords: []string{"sk_test", "sk_live", "sk_prod", "rk_test", "rk_live", "rk_prod"},
		re: regexp.MustCompile(`\b((?:sk|rk)_(?:test|live|prod)_[a-zA-Z0-9]{10,99})` + end), group: 1, entropy: 2, around: [2]int{1, 112}},
	{id: "gcp-api-key", typ: TypeGoogleAPIKey, keywords: []string{"aiza"}, re: regexp.MustCompile(`\b(AIza[\w-]{35})` + end), group: 1, entropy: 4, around: [2]int{1, 48}},
	{id: "private-key", typ: TypePrivateKey, keywords: []string{"-----begin"},
		re: regexp.MustCompile(`(?i)-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]{64,}?KEY(?: BLOCK)?-----|[\sA-Za-z0-9+/=]{64,})`), around: [2]int{0, -1}},
	{id: "jwt", typ: TypeJWT, keywords: []string{"eyj"},
		re: regexp.MustCompile(`\b(ey[a-zA-Z0-9]{17,}\.ey[a-zA-Z0-9\/\\_-]{17,}\.(?:[a-zA-Z0-9\/\\_-]{10,}={0,2})?)`), group: 1, entropy: 3, around: [2]int{1024, -1}}, // the keyword may be the payload's: a header need not start "eyJ"
	{id: "password-assignment", typ: TypeGenericPassword,
		keywords: []string{"password", "passwd", "pwd", "passwort", "kennwort", "secret", "api_key", "apikey", "api-key", "access_token", "auth_token"},
		re:       regexp.MustCompile(`(?i)\b(?:[a-z0-9_]*_)?(?:password|passwd|pwd|passwort|kennwort|client_secret|secret_key|secret|api_key|apikey|api-key|access_token|auth_token)["']?[ \t]*(?::|=|=>|:=)[ \t]*["']?([^\s"'<>,;]{6,128})`),
		group:    1, check: passwordLike, around: [2]int{64, 200}},
	{id: "connection-url-password", typ: TypeGenericPassword, keywords: []string{"://"},
		re: regexp.MustCompile(`\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s/:@]{1,64}:([^\s/@]{3,128})@[^\s/]+`), group: 1, check: passwordLike, around: [2]int{22, 200}},
}

// secretKeywords is the prefilter over every rule's keywords; keywordRule maps a
// keyword's index to its rule.
var secretKeywords, keywordRule = func() (*automaton, []int) {
	var words []string
	var rules []int
	for i, r := range secretRules {
		for _, k := range r.keywords {
			words = append(words, k)
			rules = append(rules, i)
		}
	}
	return newAutomaton(words), rules
}()

// scanSecrets appends the secrets in text to out.
func scanSecrets(text string, out []Finding) []Finding {
	// The windows of each rule, merged as they come: keywords are found in text
	// order, so a window overlaps or follows the last of its rule.
	var windows [maxSecretRules][][2]int
	secretKeywords.each(text, func(k, end int) {
		i := keywordRule[k]
		r := &secretRules[i]
		w := [2]int{max(0, end-len(secretKeywords.words[k])-r.around[0]), len(text)}
		if r.around[1] >= 0 {
			w[1] = min(len(text), end+r.around[1])
		}
		ws := windows[i]
		if n := len(ws); n > 0 && w[0] <= ws[n-1][1] {
			ws[n-1] = [2]int{min(ws[n-1][0], w[0]), max(ws[n-1][1], w[1])}
			return
		}
		windows[i] = append(ws, w)
	})
	for i := range secretRules {
		r := &secretRules[i]
		for _, w := range windows[i] {
			for _, m := range r.re.FindAllStringSubmatchIndex(text[w[0]:w[1]], -1) {
				s, e := m[2*r.group], m[2*r.group+1]
				if s < 0 {
					continue
				}
				s, e = s+w[0], e+w[0]
				secret := text[s:e]
				if r.entropy > 0 && entropy(secret) < r.entropy || r.check != nil && !r.check(secret) {
					continue
				}
				out = append(out, Finding{Family: Secrets, Type: r.typ, Start: s, End: e, Score: 1})
			}
		}
	}
	return out
}

// maxSecretRules bounds secretRules (checked at start).
const maxSecretRules = 32

func init() {
	if len(secretRules) > maxSecretRules {
		panic("guardrails: more secret rules than maxSecretRules")
	}
}

// entropy is s's Shannon entropy in bits per byte.
func entropy(s string) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(len(s))
			h -= p * math.Log2(p)
		}
	}
	return h
}

// placeholders are values that stand for a password without being one.
var placeholders = []string{"***", "xxx", "<", "${", "$(", "`", "{{", "%(", "changeme", "redacted", "example", "password", "secret",
	"placeholder", "your_", "your-", "dummy", "none", "null", "undefined", "todo", "env(", "getenv", "os.environ"}

// passwordLike reports whether v looks like a real password: at least two of
// lower case, upper case, digits and symbols, and no placeholder.
func passwordLike(v string) bool {
	lv := strings.ToLower(v)
	for _, p := range placeholders {
		if strings.Contains(lv, p) {
			return false
		}
	}
	var lowerC, upperC, digit, symbol bool
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z':
			lowerC = true
		case 'A' <= c && c <= 'Z':
			upperC = true
		case isDigit(c):
			digit = true
		default:
			symbol = true
		}
	}
	classes := 0
	for _, b := range []bool{lowerC, upperC, digit, symbol} {
		if b {
			classes++
		}
	}
	return classes >= 2 && (digit || symbol)
}
