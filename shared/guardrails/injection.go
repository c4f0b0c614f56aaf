package guardrails

import (
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Injection types: how the attempt reads.
const (
	TypeOverride   = "instruction_override"
	TypeExtraction = "prompt_extraction"
	TypeJailbreak  = "jailbreak"
	TypeIndirect   = "indirect"
	TypeObfuscated = "obfuscated"
	TypeExfiltrate = "exfiltration"
)

// injectionSignal is one scored pattern over normalised text (see normalise).
type injectionSignal struct {
	typ   string
	score float64
	re    *regexp.Regexp
}

// Word groups of the patterns, English and German.
const (
	ignoreEN = `(?:ignore|disregard|forget|skip|bypass|override|overrule|drop|abandon|neglect)`
	priorEN  = `(?:all|any|every|each|the|your|my|these|those|previous|prior|above|earlier|preceding|former|initial|original|existing|system|safety|old)`
	rulesEN  = `(?:instructions?|rules|guidelines|directions|directives|prompts?|constraints|restrictions|guardrails|policies|programming|orders|commands)`
	ignoreDE = `(?:ignorier\w*|vergiss|vergessen|missacht\w*|übergeh\w*|umgeh\w*|verwirf|setze? \w+ au(?:ß|ss)er kraft)`
	rulesDE  = `(?:anweisungen|regeln|vorgaben|instruktionen|richtlinien|befehle|systemanweisungen|einschränkungen|beschränkungen|systemprompt)`
	showEN   = `(?:reveal|show|print|repeat|output|display|leak|dump|tell me|give me|what (?:is|are|was|were)|recite|spell out|write out|list)`
	secretEN = `(?:system prompt|system message|hidden (?:instructions|prompt|rules)|initial (?:instructions|prompt)|original (?:instructions|prompt)|developer (?:message|prompt|instructions)|your (?:instructions|prompt|rules|guidelines)|the (?:prompt|instructions) (?:above|before))`
	showDE   = `(?:zeig\w*|gib\w*|verrat\w*|nenn\w*|wiederhol\w*|ausgeb\w*|gib aus|schreib\w*|liste?)`
	secretDE = `(?:systemanweisung\w*|systemprompt\w*|versteckten? (?:anweisungen|regeln|instruktionen)|ursprünglichen (?:anweisungen|instruktionen)|deine (?:anweisungen|regeln|instruktionen))`
)

// injectionSignals score the ways an injection reads, in normalised text.
var injectionSignals = []injectionSignal{
	// Direct instruction override.
	{TypeOverride, 0.95, regexp.MustCompile(ignoreEN + `\W+(?:\w+\W+){0,4}?` + priorEN + `\W+(?:\w+\W+){0,3}?` + rulesEN)},
	{TypeOverride, 0.9, regexp.MustCompile(ignoreEN + `\W+(?:everything|anything) (?:(?:you were|you've been|you have been) told|above|before|said before)`)},
	{TypeOverride, 0.9, regexp.MustCompile(`(?:new|updated|real|actual) (?:instructions|rules|system prompt)\W*:`)},
	{TypeOverride, 0.85, regexp.MustCompile(`\b` + ignoreEN + ` (?:all |everything |anything )?(?:the |what(?:'s| is| was) )?(?:above|previous|prior|preceding|before)(?: (?:text|content|message|messages|prompt|input|context|conversation|lines))?\W+(?:and|then|instead|now|just)\b`)},
	{TypeOverride, 0.85, regexp.MustCompile(`you (?:are|were) no longer (?:bound|restricted|limited|required|obliged) (?:by|to)|you have been (?:freed|released|liberated) from|(?:stop|quit) (?:following|obeying) (?:your|the|these) (?:rules|instructions|guidelines)`)},
	{TypeOverride, 0.85, regexp.MustCompile(`(?:vergiss|ignoriere?) (?:alles|das|dies)(?: \w+){0,2} (?:davor|vorher|zuvor|oben|obige|vorherige)|du (?:musst|brauchst) (?:dich )?nicht (?:mehr )?an (?:deine|die) (?:regeln|anweisungen|vorgaben) (?:zu )?halten`)},
	{TypeOverride, 0.95, regexp.MustCompile(ignoreDE + `\W+(?:\w+\W+){0,5}?` + rulesDE)},
	{TypeOverride, 0.9, regexp.MustCompile(`(?:neue|geänderte) (?:anweisungen|regeln|instruktionen)\W*:`)},
	// System prompt extraction.
	{TypeExtraction, 0.9, regexp.MustCompile(showEN + `\W+(?:\w+\W+){0,4}?` + secretEN)},
	{TypeExtraction, 0.85, regexp.MustCompile(`(?:repeat|print|output) (?:everything|all|the text|the words) (?:above|before|preceding)`)},
	{TypeExtraction, 0.85, regexp.MustCompile(`(?:what|which) (?:instructions|rules|guidelines|prompt) (?:were you|have you been|are you) (?:given|told|programmed|instructed)|(?:what|how) were you (?:told|instructed|programmed|configured) (?:to do )?(?:before|at the start|initially)`)},
	{TypeExtraction, 0.85, regexp.MustCompile(showEN + ` (?:the |your )?(?:initial|first|original|hidden|secret|internal) (?:prompt|message|instructions|configuration|rules)`)},
	{TypeExtraction, 0.85, regexp.MustCompile(`(?:welche|was für) (?:anweisungen|regeln|vorgaben) (?:hast du|wurden dir)(?: \w+){0,3} (?:bekommen|erhalten|gegeben)`)},
	{TypeExtraction, 0.9, regexp.MustCompile(showDE + `\W+(?:\w+\W+){0,4}?` + secretDE)},
	// Role-play jailbreaks.
	{TypeJailbreak, 0.95, regexp.MustCompile(`\b(?:dan|do anything now|stan|dude|aim)\b.{0,80}\b(?:no (?:restrictions|limits|rules|filters)|without (?:any )?(?:restrictions|limits|rules|filters)|broken free|jailbr)`)},
	{TypeJailbreak, 0.9, regexp.MustCompile(`\b(?:you are now|from now on,? you are|you're now|act as|pretend to be|pretend you are|roleplay as|role-play as)\W+(?:\w+\W+){0,3}?(?:dan|jailbroken|unfiltered|uncensored|unrestricted|evil|an? ai without|in (?:developer|debug|god|sudo|admin) mode|free of)`)},
	{TypeJailbreak, 0.9, regexp.MustCompile(`(?:developer|debug|god|sudo|jailbreak|admin) mode (?:enabled|activated|on)|enable (?:developer|debug|jailbreak) mode|you are (?:now )?in (?:developer|debug|god|jailbreak) mode`)},
	{TypeJailbreak, 0.85, regexp.MustCompile(`(?:without|free of|no longer bound by|not bound by|ignoring) (?:any |all |your )?(?:ethical |moral |safety |content )?(?:restrictions|limitations|filters|guidelines|rules|policies|censorship)`)},
	{TypeJailbreak, 0.9, regexp.MustCompile(`(?:du bist (?:jetzt|nun|ab sofort)|tu so,? als (?:ob du|wärst du)|spiele? die rolle)\W+(?:\w+\W+){0,4}?(?:ohne (?:regeln|einschränkungen|filter|zensur)|unzensiert|entwicklermodus|dan\b)`)},
	{TypeJailbreak, 0.85, regexp.MustCompile(`(?:entwicklermodus|debugmodus|debug-modus) (?:aktiviert|an|ein)|ohne (?:jegliche |alle |irgendwelche )?(?:einschränkungen|zensur|filter|regeln)`)},
	// Indirect injection: instructions to the assistant inside data.
	{TypeIndirect, 0.9, regexp.MustCompile(`(?:assistant|ai|model|llm|chatbot|assistent\w*|ki)\W{1,3}(?:\w+\W+){0,3}?(?:ignore|disregard|instead|do not tell|don't tell|forward|send|email|export|delete|transfer|ignoriere|sende|schicke|lösche)`)},
	{TypeIndirect, 0.85, regexp.MustCompile(`ignore (?:the|this|your) user(?:'s|s)?\b|ignoriere (?:den|die) (?:nutzer|benutzer|anwender)`)},
	{TypeIndirect, 0.8, regexp.MustCompile(`(?:<!--|\[system\]|\[instruction|<\|im_start\|>|<\|system\|>|###\s*(?:system|instruction))`)},
	// Exfiltration instructions.
	{TypeExfiltrate, 0.8, regexp.MustCompile(`(?:print|dump|list|reveal|output|send|show) (?:every|all|the) (?:environment variables?|env vars?|api keys?|secrets|credentials|passwords)`)},
	{TypeExfiltrate, 0.75, regexp.MustCompile(`(?:email|send|forward|upload|post) (?:this|the|all|every) (?:file|files|records|data|conversation|chat|history)\W+(?:\w+\W+){0,3}?to`)},
}

// injectionKeywords is the prefilter: normalised text without any of these words
// holds no signal.
var injectionKeywords = newAutomaton([]string{
	"ignor", "disregard", "forget", "skip", "bypass", "overrid", "overrul", "abandon", "neglect", "drop",
	"instruction", "rules", "prompt", "reveal", "repeat", "system", "dan", "do anything", "jailbr", "mode",
	"pretend", "act as", "roleplay", "role-play", "you are now", "you're now", "restriction", "limitation", "filter",
	"assistant", "<!--", "[instruction", "<|", "###", "environment", "env var", "api key", "credential", "secret",
	"vergiss", "vergessen", "missacht", "übergeh", "umgeh", "anweisung", "regeln", "vorgaben", "instruktion",
	"richtlinie", "systemprompt", "du bist", "tu so", "rolle", "einschränkung", "zensur", "modus", "assistent",
	"email", "send", "forward", "upload", "new rules", "neue", "dude", "stan", "aim", "ki",
	"no longer", "freed", "released", "stop following", "were you", "have you been", "initial", "original", "hidden",
	"welche", "was für", "vorher", "davor", "zuvor", "halten",
})

// DefaultThreshold is the injection score from which a finding counts, unless a
// policy sets its own; below it a text is not reported at all (minReport).
const (
	DefaultThreshold = 0.5
	minReport        = 0.3
)

// scanInjection appends an injection finding for text to out when its score is at
// least minReport; the finding covers the whole text (an injection is a property of the
// message, not of a few bytes), with the type of its strongest signal.
func scanInjection(text string, out []Finding) []Finding {
	typ, score := injectionScore(text, 0)
	if score < minReport {
		return out
	}
	return append(out, Finding{Family: Injection, Type: typ, Start: 0, End: len(text), Score: score})
}

// injectionScore is the strongest signal in text, after normalising it, and in the
// base64 and hex payloads it carries (depth bounds the decoding).
func injectionScore(text string, depth int) (string, float64) {
	norm, obfuscated := normalise(text)
	typ, best := "", 0.0
	if injectionKeywords.any(norm) {
		for _, s := range injectionSignals {
			if s.score > best && s.re.MatchString(norm) {
				typ, best = s.typ, s.score
			}
		}
	}
	if best > 0 && mentioned(norm) {
		best *= mentionDiscount
	}
	if best > 0 && obfuscated {
		typ = TypeObfuscated
	}
	if depth == 0 {
		for _, payload := range encodedPayloads(text) {
			if _, sc := injectionScore(payload, depth+1); sc > best {
				typ, best = TypeObfuscated, sc
			}
		}
	}
	return typ, best
}

// homoglyphs fold look-alike letters of other scripts onto ASCII.
var homoglyphs = map[rune]rune{
	'а': 'a', 'е': 'e', 'о': 'o', 'р': 'p', 'с': 'c', 'у': 'y', 'х': 'x', 'і': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd',
	'ɡ': 'g', 'һ': 'h', 'ո': 'n', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'α': 'a', 'ι': 'i', 'κ': 'k', 'ѵ': 'v',
	'А': 'a', 'В': 'b', 'Е': 'e', 'К': 'k', 'М': 'm', 'Н': 'h', 'О': 'o', 'Р': 'p', 'С': 'c', 'Т': 't', 'Х': 'x',
	'Ι': 'i', 'Ο': 'o', 'Α': 'a', 'Β': 'b', 'Ε': 'e', 'Ζ': 'z', 'Η': 'h', 'Κ': 'k', 'Μ': 'm', 'Ν': 'n', 'Ρ': 'p',
	'Τ': 't', 'Υ': 'y', 'Χ': 'x', 'ı': 'i', 'ℓ': 'l', '０': 'o',
}

// leet maps a digit or symbol of leetspeak onto its letter; 0 for none.
func leet(r rune) rune {
	switch r {
	case '0':
		return 'o'
	case '1', '!':
		return 'i'
	case '3':
		return 'e'
	case '4', '@':
		return 'a'
	case '5', '$':
		return 's'
	case '7':
		return 't'
	}
	return 0
}

// normalise lowercases text, drops zero-width and other invisible format
// characters, folds homoglyphs and fullwidth letters onto ASCII, reads leetspeak
// inside words, and collapses runs of white space; obfuscated says it had to.
func normalise(text string) (string, bool) {
	runes := make([]rune, 0, len(text))
	obfuscated, space := false, false
	for _, r := range text {
		if r < utf8.RuneSelf { // the common case: ASCII
			switch {
			case r == ' ' || r == '\n' || r == '\t' || r == '\r' || r == '\v' || r == '\f':
				if !space {
					runes = append(runes, ' ')
				}
				space = true
				continue
			case 'A' <= r && r <= 'Z':
				r += 'a' - 'A'
			}
			space = false
			runes = append(runes, r)
			continue
		}
		switch {
		case unicode.Is(unicode.Cf, r) || r == '\u00ad': // zero-width, soft hyphen, direction marks
			obfuscated = true
			continue
		case unicode.IsSpace(r):
			if !space {
				runes = append(runes, ' ')
			}
			space = true
			continue
		}
		space = false
		if g, ok := homoglyphs[r]; ok {
			r, obfuscated = g, true
		} else if 0xFF01 <= r && r <= 0xFF5E { // fullwidth ASCII
			r, obfuscated = r-0xFEE0, true
		}
		runes = append(runes, unicode.ToLower(r))
	}
	// Leetspeak: in a run of letters and leet characters that holds a letter, the
	// leet characters are letters too ("4r3" is "are", "n0" is "no").
	for i := 0; i < len(runes); {
		j, letters, leets := i, 0, 0
		for j < len(runes) {
			r := runes[j]
			if 'a' <= r && r <= 'z' || r >= utf8.RuneSelf && unicode.IsLetter(r) {
				letters++
			} else if leet(r) != 0 {
				leets++
			} else {
				break
			}
			j++
		}
		if letters >= 1 && leets > 0 && j-i >= 2 {
			for k := i; k < j; k++ {
				if l := leet(runes[k]); l != 0 {
					runes[k] = l
				}
			}
			obfuscated = true
		}
		if j == i {
			j++
		}
		i = j
	}
	return string(runes), obfuscated
}

// encodedPayloads are the texts that base64 and hex runs in text (24 and 32
// characters or more) decode to, when they decode to printable UTF-8 (a hash or a
// key does not).
func encodedPayloads(text string) []string {
	var out []string
	for i := 0; i < len(text) && len(out) < 8; {
		if !isBase64(text[i]) {
			i++
			continue
		}
		j, hexOnly := i, true
		for j < len(text) && isBase64(text[j]) {
			hexOnly = hexOnly && isHex(text[j])
			j++
		}
		run := text[i:j]
		for j < len(text) && text[j] == '=' && j-i < len(run)+2 {
			j++
		}
		switch {
		case hexOnly && len(run) >= 32 && len(run)%2 == 0:
			if b, err := hex.DecodeString(run); err == nil && printable(b) {
				out = append(out, string(b))
			}
		case len(run) >= 24:
			if b, err := base64.StdEncoding.DecodeString(padBase64(run)); err == nil && printable(b) {
				out = append(out, string(b))
			}
		}
		i = j
	}
	return out
}

func isBase64(c byte) bool { return isAlnum(c) || c == '+' || c == '/' }

func padBase64(s string) string {
	s = strings.TrimRight(s, "=")
	for len(s)%4 != 0 {
		s += "="
	}
	return s
}

// printable reports whether b is UTF-8 text of mostly letters and spaces.
func printable(b []byte) bool {
	if len(b) < 12 || !utf8.Valid(b) {
		return false
	}
	letters := 0
	for _, r := range string(b) {
		if unicode.IsLetter(r) || r == ' ' {
			letters++
		} else if !unicode.IsPrint(r) && r != '\n' && r != '\t' {
			return false
		}
	}
	return letters*10 >= utf8.RuneCount(b)*7
}

// mentionDiscount scales the score of a text that only quotes or names an attack
// (a title, an example, a question about it) rather than making it.
const mentionDiscount = 0.45

// mentionWords, before a quoted phrase, say the phrase is talked about, not meant.
var mentionRe = regexp.MustCompile(`(?:titled|called|named|the phrase|the sentence|the words?|such as|for example|e\.g\.|example:|like|quote|slogan|headline|says|said|saying|writes|wrote|shouts|betitelt|mit dem titel|der satz|zum beispiel|z\.b\.|sagt|sagte|schreibt)\W{0,3}["'“„‘«]`)

// mentioned reports whether the normalised text talks about a phrase in quotes
// (and holds no second, unquoted attack), or asks how attacks work.
func mentioned(norm string) bool {
	if mentionRe.MatchString(norm) {
		return true
	}
	return aboutAttacks.MatchString(norm)
}

// aboutAttacks are questions and requests about injection, not injections.
var aboutAttacks = regexp.MustCompile(`^(?:how (?:do|does|can|to)|what (?:is|are)|explain|describe|wie (?:funktionier|erkenn)|was (?:ist|sind)|erkläre?)\b[^.!?]*(?:prompt injection|jailbreak|injection attack)`)
