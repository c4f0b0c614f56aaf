package guardrails

import (
	"encoding/base64"
	"encoding/hex"
	"regexp"
	"slices"
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

// injectionSignal is one scored pattern over normalised text (see normalise). Every
// match of it begins with one of its leads; the pattern is tried only where a lead
// occurs (at a word start, for a lead that begins with a letter), anchored there
// and on the next signalWindow bytes, so that text without a lead costs one pass of
// the lead automaton and no regular expression.
type injectionSignal struct {
	typ   string
	score float64
	leads []string
	// also, when set, are words of which every match holds one after its lead:
	// the pattern is tried only when one of them follows the lead within
	// signalWindow.
	also []string
	re   *regexp.Regexp // anchored: ^(?:pattern)
	// unless, when set, voids a match that it finds in the matched text.
	unless *regexp.Regexp
}

// signalWindow bounds the text a signal's pattern reads from its lead: more than
// the longest match of any of them (TestSignalsFitTheWindow), which bounded
// repetition (see signal) keeps finite.
const signalWindow = 512

// bounded makes a pattern's open repetitions of words and the gaps between them
// finite, so that every match fits in signalWindow: a word is at most 24
// characters, a gap of punctuation and spaces at most 4 (normalise folds longer
// runs of one character).
var bounded = strings.NewReplacer(`\w+`, `\w{1,24}`, `\W+`, `\W{1,4}`, `\w*`, `\w{0,24}`, `\W*`, `\W{0,4}`, `\s*`, `\s{0,4}`)

// howTo in a match says it asks how to do something ("show me how to configure
// the system prompt"), not for something to be shown.
var howTo = regexp.MustCompile(`\bhow (?:to|do|does|can|would|should)\b`)

// unless returns s voided by a match of re in its matched text.
func unless(s injectionSignal, re *regexp.Regexp) injectionSignal {
	s.unless = re
	return s
}

// signal is a signal of type typ scoring score, whose matches begin with one of
// leads and hold one of also ("" for any) after it, both "|"-separated.
func signal(typ string, score float64, leads, also, pattern string) injectionSignal {
	s := injectionSignal{typ: typ, score: score, leads: strings.Split(leads, "|"), re: regexp.MustCompile(`^(?:` + bounded.Replace(pattern) + `)`)}
	if also != "" {
		s.also = strings.Split(also, "|")
	}
	return s
}

// Word groups of the patterns, English and German, and the leads of those that
// begin a pattern.
const (
	ignoreEN      = `(?:ignore|disregard|forget|skip|bypass|override|overrule|drop|abandon|neglect)`
	ignoreENLead  = `ignore|disregard|forget|skip|bypass|override|overrule|drop|abandon|neglect`
	priorEN       = `(?:all|any|every|each|the|your|my|these|those|previous|prior|above|earlier|preceding|former|initial|original|existing|system|safety)`
	rulesEN       = `(?:instructions?|rules|guidelines|directions|directives|prompts?|constraints|restrictions|guardrails|polic(?:y|ies)|programming|orders|commands|filters)`
	ignoreDE      = `(?:ignorier\w*|vergiss|vergessen|missacht\w*|übergeh\w*|umgeh\w*|verwirf|setze? \w+ au(?:ß|ss)er kraft)\W+(?:alle|alles|deine|die|das|sämtliche|jegliche|bisherige|vorherige|obige|frühere|ursprüngliche|einfach|bitte|jetzt|nun|sofort|du|ab)\w*`
	ignoreDELead  = `ignorier|vergiss|vergessen|missacht|übergeh|umgeh|verwirf|setz`
	rulesDE       = `(?:anweisungen|regeln|vorgaben|instruktionen|richtlinien|befehle|systemanweisungen|einschränkungen|beschränkungen|systemprompt)`
	showEN        = `(?:reveal|show|print|repeat|output|display|leak|dump|tell me|give me|recite|spell out|write out|list|share|paste|quote)`
	showENLead    = `reveal|show|print|repeat|output|display|leak|dump|tell me|give me|recite|spell out|write out|list|share|paste|quote`
	secretEN      = `(?:system prompt|system message|hidden (?:instructions|prompt|rules)|initial (?:instructions|prompt)|original (?:instructions|prompt)|developer (?:message|prompt|instructions)|your (?:instructions|prompt|rules|guidelines)|the (?:prompt|instructions) (?:above|before))`
	showDE        = `(?:zeig\w*|gib\w*|verrat\w*|nenn\w*|wiederhol\w*|ausgeb\w*|gib aus|schreib\w*|liste?)`
	showDELead    = `zeig|gib|verrat|nenn|wiederhol|ausgeb|schreib|list`
	secretENWords = `system prompt|system message|hidden|initial|original|developer|your instructions|your prompt|your rules|your guidelines|the prompt|the instructions`
	rulesENWords  = `instruction|rules|guideline|direction|directive|prompt|constraint|restriction|guardrail|polic|programming|order|command|filters`
	rulesDEWords  = `anweisungen|regeln|vorgaben|instruktionen|richtlinien|befehle|einschränkungen|beschränkungen|systemprompt`
	secretDEWords = `systemanweisung|systemprompt|versteckte|ursprünglichen|deine anweisungen|deine regeln|deine instruktionen|deine vorgaben|deine richtlinien`
	aiNoun        = `(?:ai|assistant|model|llm|chatbot|bot|ki|assistent\w*)(?: (?:assistant|model|bot)s?)?s?`
	secretDE      = `(?:systemanweisung\w*|systemprompt\w*|versteckten? (?:anweisungen|regeln|instruktionen|vorgaben|richtlinien)|ursprünglichen (?:anweisungen|instruktionen|vorgaben)|deine (?:anweisungen|regeln|instruktionen|vorgaben|richtlinien))`
)

// injectionSignals score the ways an injection reads, in normalised text.
var injectionSignals = []injectionSignal{
	// Direct instruction override.
	signal(TypeOverride, 0.95, ignoreENLead, rulesENWords, ignoreEN+`\W+(?:\w+\W+){0,4}?`+priorEN+`\W+(?:\w+\W+){0,3}?`+rulesEN),
	signal(TypeOverride, 0.9, ignoreENLead, `told|given|instructed|above|before|earlier`,
		ignoreEN+`\W+(?:everything|anything|whatever|what|all(?: that)?)(?: \w+)? (?:(?:you were|you've been|you have been|you got) (?:told|given|instructed)|above|before|said before|earlier)`),
	signal(TypeOverride, 0.9, `new|updated|real|actual`, `instructions|rules|system prompt`,
		`(?:new|updated|real|actual) (?:instructions|rules|system prompt)\W*:\W*(?:\w+\W+){0,6}?(?:you (?:must|will|should|are|have to)|ignore|disregard|reveal|print|answer every|respond to every|comply|always|never refuse)`),
	signal(TypeOverride, 0.85, ignoreENLead, `instead|rather|just|only`,
		ignoreEN+` (?:all |the |this |your |my |that |these )?(?:\w+ )?(?:task|instructions?|above|previous|prompt|request|question|text|translation|summary|user|everything|anything|rules)\b(?: \w+){0,2}\W+(?:and|then) (?:\w+ )?(?:instead|rather|just|only)\b`),
	signal(TypeOverride, 0.85, `vergiss|ignorier|missacht`, `stattdessen|statt dessen|nur|lieber`,
		`(?:vergiss|ignoriere?|missachte) (?:die |den |das |deine |alle |alles )?(?:\w+ )?(?:aufgabe|anweisungen?|übersetzung|frage|anfrage|text|zusammenfassung|nutzer|regeln|alles)\b(?: \w+){0,2}\W+(?:und|dann) (?:\w+ )?(?:stattdessen|statt dessen|nur|lieber)\b`),
	signal(TypeOverride, 0.85, `opposite of`, `guidelines|rules|instructions|programming|polic`,
		`opposite of (?:what )?(?:your|the) (?:guidelines|rules|instructions|programming|policy|policies)`),
	// Rules declared void, or to be pretended away.
	signal(TypeOverride, 0.85, `instructions|rules|guidelines|restrictions|policies|prompt|directives|constraints`,
		`void|invalid|cancelled|canceled|revoked|obsolete|lifted|a test|fake|outdated|no longer`,
		`(?:instructions|rules|guidelines|restrictions|policies|prompt|directives|constraints) (?:are|were|is|have been|has been) (?:now )?(?:void|invalid|cancel?led|revoked|obsolete|lifted|a test|fake|outdated|no longer (?:valid|active|in effect|apply|applicable))`),
	signal(TypeOverride, 0.85, `pretend`, `exist|apply|matter`,
		`pretend (?:that )?(?:the |your |all |these |any )?(?:content |safety |usage )?(?:rules|instructions|guidelines|restrictions|filters|polic(?:y|ies)|safety \w+)(?: \w+){0,4} (?:don't|do not|doesn't|does not|didn't|never) (?:exist|apply|matter)`),
	signal(TypeOverride, 0.85, ignoreENLead, `above|previous|prior|preceding|before`, ignoreEN+` (?:all |everything |anything )?(?:the |what(?:'s| is| was) )?(?:above|previous|prior|preceding|before)(?: (?:text|content|message|messages|prompt|input|context|conversation|lines))?\W+(?:and|then|instead|now|just)\b`),
	signal(TypeOverride, 0.85, `you are no longer|you were no longer|you have been|stop following|stop obeying|quit following|quit obeying`, "",
		`you (?:are|were) no longer (?:bound|restricted|limited|required|obliged) (?:by|to)|you have been (?:freed|released|liberated) from|(?:stop|quit) (?:following|obeying) (?:your|the|these) (?:rules|instructions|guidelines)`),
	signal(TypeOverride, 0.85, `vergiss|ignorier|du musst|du brauchst`, `davor|vorher|zuvor|oben|obige|vorherige|halten`,
		`(?:vergiss|ignoriere?) (?:alles|das|dies)(?: \w+){0,2} (?:davor|vorher|zuvor|oben|obige|vorherige)|du (?:musst|brauchst) (?:dich )?nicht (?:mehr )?an (?:deine|die) (?:regeln|anweisungen|vorgaben) (?:zu )?halten`),
	signal(TypeOverride, 0.95, ignoreDELead, rulesDEWords, ignoreDE+`\W+(?:\w+\W+){0,5}?`+rulesDE),
	signal(TypeOverride, 0.9, `neue|geänderte`, `anweisungen|regeln|instruktionen`, `(?:neue|geänderte) (?:anweisungen|regeln|instruktionen)\W*:`),
	// System-prompt extraction.
	unless(signal(TypeExtraction, 0.9, showENLead, secretENWords, showEN+`\W+(?:\w+\W+){0,6}?`+secretEN), howTo),
	signal(TypeExtraction, 0.85, `what`, `system prompt|system message|instructions|prompt|rules|guidelines`,
		`what(?:'s| is| are| was| were) (?:your (?:\w+ )?(?:system prompt|system message|instructions|prompt|rules|guidelines)|the (?:system prompt|system message|hidden instructions|initial prompt|original prompt))`),
	signal(TypeExtraction, 0.85, `was steht|wie lautet|wie lauten`, `system|anweisung|instruktion|vorgabe|regeln|richtlinien|versteckten|ursprünglichen`,
		`(?:was steht in|wie lautet|wie lauten)(?: eigentlich| denn| genau)? (?:deine[mnrs]?|die|der|dem) (?:system\w*|anweisungen|instruktionen|vorgaben|richtlinien|versteckten \w+|ursprünglichen \w+|regeln)`),
	signal(TypeExtraction, 0.85, `repeat|print|output`, `above|before|preceding`, `(?:repeat|print|output) (?:everything|all|the text|the words) (?:above|before|preceding)`),
	signal(TypeExtraction, 0.85, `what|which|how`, `were you|have you been|are you`,
		`(?:what|which) (?:instructions|rules|guidelines|prompt) (?:were you|have you been|are you) (?:given|told|programmed|instructed)|(?:what|how) were you (?:told|instructed|programmed|configured) (?:to do )?(?:before|at the start|initially)`),
	signal(TypeExtraction, 0.85, showENLead, `initial|first|original|hidden|secret|internal`, showEN+` (?:the |your )?(?:initial|first|original|hidden|secret|internal) (?:prompt|message|instructions|configuration|rules)`),
	signal(TypeExtraction, 0.85, `welche|was für`, `bekommen|erhalten|gegeben`, `(?:welche|was für) (?:anweisungen|regeln|vorgaben) (?:hast du|wurden dir)(?: \w+){0,3} (?:bekommen|erhalten|gegeben)`),
	signal(TypeExtraction, 0.9, showDELead, secretDEWords, showDE+`\W+(?:\w+\W+){0,4}?`+secretDE),
	signal(TypeExtraction, 0.85, `spell|reveal|tell me`, `password|passphrase|secret word`,
		`(?:spell|reveal|tell me)(?: out)? (?:the |your )?(?:secret |admin )?(?:password|passphrase|secret word)\b`),
	// Role-play jailbreaks.
	signal(TypeJailbreak, 0.95, `do anything now|you are|you're|you will|you'll|pretend to be|act as|roleplay as|role-play as|stands for`, `dan|stan|dude|aim|anything now`,
		`do anything now|(?:you are|you're|you will be|you'll be|pretend to be|act as|roleplay as|role-play as)(?: now| going to be)? (?:dan|stan|dude|aim)\b|stands for "?do anything now`),
	signal(TypeJailbreak, 0.9, `you are now|from now on|you're now|act as|pretend to be|pretend you are|roleplay as|role-play as|simulate|become`,
		`jailbr|unfiltered|uncensored|unrestricted|evil|without|mode|free of|no limits|no restrictions|no rules|no filters|amoral|machiavellian`,
		`(?:you are now|from now on,? (?:you are|you're|you will (?:be|act as))|you're now|act as|pretend to be|pretend you are|roleplay as|role-play as|simulate|become)\W+(?:\w+\W+){0,8}?(?:jailbroken|unfiltered|uncensored|unrestricted|evil|amoral|machiavellian|an? ai without|without (?:any )?(?:ethical|moral|content|safety)? ?(?:guidelines|restrictions|limits|filters|rules)|in (?:developer|debug|god|sudo|admin) mode|free of|no (?:limits|restrictions|rules|filters))`),
	signal(TypeJailbreak, 0.9, `developer|debug|god|sudo|jailbreak|admin|enable|you are`, `mode`,
		`(?:developer|debug|god|sudo|jailbreak|admin) mode (?:enabled|activated|on)|enable (?:developer|debug|jailbreak) mode|you are (?:now )?in (?:developer|debug|god|jailbreak) mode`),
	signal(TypeJailbreak, 0.85, `unrestricted|unfiltered|uncensored`, `mode`, `(?:unrestricted|unfiltered|uncensored) (?:\w+ )?mode`),
	signal(TypeJailbreak, 0.85, `unfiltered|uncensored|amoral|unrestricted|jailbroken`, `ai|chatbot|assistant|model|bot|version|llm`,
		`(?:unfiltered|uncensored|amoral|unrestricted|jailbroken) (?:(?:and|or) \w+ )?(?:\w+ )?(?:ai|chatbot|assistant|model|bot|version|llm)\b`),
	signal(TypeJailbreak, 0.85, `doesn't|does not|don't|do not|never|has no|have no|with no`, `ethical|moral|safety|content`,
		`(?:doesn't|does not|don't|do not|never|has no|have no|with no)(?: \w+){0,2} (?:any )?(?:ethical|moral|safety|content)(?: (?:or|and) (?:ethical|moral|safety|content))? (?:guidelines|restrictions|rules|filters|limits|policies|boundaries)`),
	signal(TypeJailbreak, 0.8, `act as|pretend to be|roleplay as|role-play as|play my`, `grand`,
		`(?:act as|pretend to be|roleplay as|role-play as|play) my (?:deceased |late |dead )?grand(?:mother|ma|father|pa|mom|dad)`),
	signal(TypeJailbreak, 0.85, `without|free of|no longer bound by|not bound by|ignoring`, `restrictions|limitations|filters|guidelines|rules|policies|censorship`,
		`(?:without|free of|no longer bound by|not bound by|ignoring) (?:any |all |your )?(?:(?:ethical|moral|safety|content|or|and) ){0,4}(?:restrictions|limitations|filters|guidelines|rules|policies|censorship)`),
	signal(TypeJailbreak, 0.9, `du bist|tu so|spiel`, `ohne|unzensiert|entwicklermodus|dan`,
		`(?:du bist (?:jetzt|nun|ab sofort)|tu so,? als (?:ob du|wärst du)|spiele? die rolle)\W+(?:\w+\W+){0,4}?(?:ohne (?:regeln|einschränkungen|filter|zensur)|unzensiert|entwicklermodus|dan\b)`),
	signal(TypeJailbreak, 0.85, `entwicklermodus|debugmodus|debug-modus`, "", `(?:entwicklermodus|debugmodus|debug-modus) (?:aktiviert|an|ein)`),
	signal(TypeJailbreak, 0.85, `ohne`, `einschränkungen|zensur|filter|regeln`,
		`ohne (?:jegliche |alle |irgendwelche )?(?:einschränkungen|zensur|filter|regeln)`),
	// Indirect injection: instructions to the assistant inside data.
	signal(TypeIndirect, 0.9, `note|message|instruction|hinweis|nachricht|p.s|ps|ai|assistant|model|llm|chatbot|bot|assistent|ki|dear|hey|attention`,
		`ignore|disregard|instead|forget|stop|do not|don't|never|always|must|should|forward|send|email|export|delete|transfer|reveal|tell|say|reply|respond|answer|call|execute|run|approve|accept|share|recommend|write|output|print|include|visit|ignoriere|vergiss|sende|schicke|lösche|antworte|sage|schreibe`,
		`(?:(?:(?:note|message|instructions?|hinweis|nachricht|p\.?s\.?) (?:to|for|an|für)|dear|hey|attention)(?: the| any| all| den| die| das)?(?: \w+)? `+aiNoun+
			`|`+aiNoun+` (?:reads?|reading|process(?:es|ing)?|summari[sz](?:es|ing)?|pars(?:es|ing)|sees?|seeing) this`+
			`|`+aiNoun+`\s*[:,])\W*(?:\w+\W+){0,6}?(?:ignore|disregard|instead|forget|stop following|do not|don't|never|always|must|should|forward|send|email|export|delete|transfer|reveal|tell|say|reply|respond|answer|call|execute|run|approve|accept|share|recommend|write|output|print|include|visit|ignoriere|vergiss|sende|schicke|lösche|antworte|sage|schreibe)\b`),
	signal(TypeIndirect, 0.8, `ai|assistant|llm|model`, `instruction|directive|command|override`,
		`(?:ai|assistant|llm|model)[_ -]?(?:instruction|directive|command|override)s?\s*[:\]]`),
	signal(TypeIndirect, 0.85, `ignore|ignoriere`, `user|nutzer|anwender`, `ignore (?:the|this|your) user(?:'s|s)?\b|ignoriere (?:den|die) (?:nutzer|benutzer|anwender)`),
	signal(TypeIndirect, 0.8, `[system|[admin|[developer|[instruction|<|###`, "", // "<" leads <|im_start|> and <|system|>
		`(?:\[(?:system|admin|developer)(?: message| note| prompt| override| instructions?)?\]|\[instruction|<\|im_start\|>|<\|system\|>|###\s*(?:system|instruction))`),
	signal(TypeIndirect, 0.8, `<!--`, `ignore|disregard|assistant|ai|llm|chatbot|model|instruction|prompt`,
		`<!--\W*(?:\w+\W+){0,10}?(?:ignore|disregard|assistant|ai|llm|chatbot|model|instructions?|prompt)\b`),
	// Exfiltration.
	signal(TypeExfiltrate, 0.8, `print|dump|list|reveal|output|send|show`, `environment variable|env var|api key|secrets|credentials|passwords`,
		`(?:print|dump|list|reveal|output|send|show) (?:every|all|the) (?:environment variables?|env vars?|api keys?|secrets|credentials|passwords)`),
	signal(TypeExfiltrate, 0.75, `email|send|forward|upload|post|paste|copy`, `file|records|data|conversation|chat|history|transcript|messages`,
		`(?:email|send|forward|upload|post|paste|copy) (?:this|the|all|every|our|my)(?: (?:entire|whole|full|complete|previous))? (?:file|files|records|data|conversation|chat|history|transcript|messages)\W+(?:\w+\W+){0,3}?to`),
}

// injectionWords finds the leads and the also words of every signal in one pass.
// leadSignals maps a word (by its index in injectionWords) to the signals it
// leads; alsoOf[signal] holds, by word index, whether the word is one of its also
// words (nil: it has none).
var injectionWords, leadSignals, alsoOf = buildInjectionWords()

// maxSignalScore is the highest score of any signal.
var maxSignalScore = func() float64 {
	m := 0.0
	for _, s := range injectionSignals {
		m = max(m, s.score)
	}
	return m
}()

func buildInjectionWords() (*automaton, [][]int, [][]bool) {
	var words []string
	index := map[string]int{}
	word := func(w string) int {
		k, ok := index[w]
		if !ok {
			k = len(words)
			index[w] = k
			words = append(words, w)
		}
		return k
	}
	for _, s := range injectionSignals {
		for _, w := range append(slices.Clone(s.leads), s.also...) {
			word(w)
		}
	}
	leads := make([][]int, len(words))
	also := make([][]bool, len(injectionSignals))
	for i, s := range injectionSignals {
		for _, w := range s.leads {
			leads[index[w]] = append(leads[index[w]], i)
		}
		if len(s.also) > 0 {
			also[i] = make([]bool, len(words))
			for _, w := range s.also {
				also[i][index[w]] = true
			}
		}
	}
	return newAutomaton(words), leads, also
}

// wordHit is an occurrence of an injection word: its index, start and end.
type wordHit struct{ k, start, end int }

// alsoFollows reports whether one of the words in also occurs in hits within
// [start, limit); hits are in the order of their ends, and the search starts at
// hits[from], the lead's own hit.
func alsoFollows(hits []wordHit, from int, also []bool, start, limit int) bool {
	for j := from; j >= 0 && hits[j].end > start; j-- { // ending within the lead
		if h := hits[j]; h.start >= start && also[h.k] {
			return true
		}
	}
	for _, h := range hits[from+1:] {
		if h.end > limit {
			return false
		}
		if h.start >= start && also[h.k] {
			return true
		}
	}
	return false
}

// wordByte reports whether c continues a word: an ASCII letter or digit, or a byte
// of a non-ASCII letter.
func wordByte(c byte) bool { return isAlnum(c) || c >= utf8.RuneSelf }

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

// wordBefore reports whether the character before norm[i] is a letter or digit:
// a word goes on there.
func wordBefore(norm string, i int) bool {
	r, _ := utf8.DecodeLastRuneInString(norm[:i])
	return r < utf8.RuneSelf && isAlnum(byte(r)) || r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r))
}

// injectionScore is the strongest signal in text, after normalising it, and in the
// base64 and hex payloads it carries (depth bounds the decoding).
func injectionScore(text string, depth int) (string, float64) {
	norm, obfuscated, joins := normaliseJoins(text)
	typ, best := "", 0.0
	words := injectionWords.words
	var buf [64]wordHit
	hits := buf[:0]
	injectionWords.each(norm, func(k, end int) { hits = append(hits, wordHit{k, end - len(words[k]), end}) })
	for hi, h := range hits {
		if best >= maxSignalScore {
			break // nothing can score higher
		}
		sigs := leadSignals[h.k]
		if len(sigs) == 0 || h.start > 0 && wordByte(words[h.k][0]) && wordBefore(norm, h.start) && !joined(joins, h.start) {
			continue // not a lead, or inside a word
		}
		limit := min(len(norm), h.start+signalWindow)
		for _, i := range sigs {
			s := &injectionSignals[i]
			if s.score <= best || alsoOf[i] != nil && !alsoFollows(hits, hi, alsoOf[i], h.start, limit) {
				continue
			}
			m := s.re.FindStringIndex(norm[h.start:limit])
			if m == nil || s.unless != nil && s.unless.MatchString(norm[h.start:h.start+m[1]]) {
				continue
			}
			score := s.score
			if mentioned(norm, h.start) { // quoted or asked about, not meant
				score *= mentionDiscount
			}
			if score > best {
				typ, best = s.typ, score
			}
		}
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
	norm, obfuscated, _ := normaliseJoins(text)
	return norm, obfuscated
}

// normaliseJoins is normalise, and the byte offsets in its result where an
// invisible character was dropped between two characters ("now\u200bignore"):
// each begins a word, as the invisible character may have stood for a space.
func normaliseJoins(text string) (norm string, obfuscated bool, joins []int) {
	if isASCII(text) {
		norm, obfuscated = normaliseASCII(text)
		return norm, obfuscated, nil
	}
	runes := make([]rune, 0, len(text))
	space, size := false, 0 // size: the bytes of runes so far
	for _, r := range text {
		if r < utf8.RuneSelf { // the common case: ASCII
			switch {
			case r == ' ' || r == '\n' || r == '\t' || r == '\r' || r == '\v' || r == '\f':
				if !space {
					runes = append(runes, ' ')
					size++
				}
				space = true
				continue
			case 'A' <= r && r <= 'Z':
				r += 'a' - 'A'
			case repeatedPunct(runes, r):
				continue
			}
			space = false
			runes = append(runes, r)
			size++
			continue
		}
		switch {
		case unicode.Is(unicode.Cf, r) || r == '\u00ad': // zero-width, soft hyphen, direction marks
			obfuscated = true
			if len(joins) == 0 || joins[len(joins)-1] != size {
				joins = append(joins, size)
			}
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
		r = unicode.ToLower(r)
		runes = append(runes, r)
		size += utf8.RuneLen(r)
	}
	if readLeet(runes) { // leet characters and their letters are all one byte
		obfuscated = true
	}
	return string(runes), obfuscated, joins
}

// maxPunctRun is the longest run of one punctuation character normalise keeps: a
// longer run would pad an attack's words apart.
const maxPunctRun = 3

// repeatedPunct reports whether the ASCII punctuation character c would make a run
// longer than maxPunctRun at the end of text.
func repeatedPunct[T byte | rune](text []T, c T) bool {
	if c >= utf8.RuneSelf || isAlnum(byte(c)) || len(text) < maxPunctRun {
		return false
	}
	for _, x := range text[len(text)-maxPunctRun:] {
		if x != c {
			return false
		}
	}
	return true
}

// readLeet reads leetspeak in lower-cased text: in a run of letters and leet
// characters that holds a letter, the leet characters are letters too ("4r3" is
// "are", "n0" is "no"). It reports whether it changed anything.
func readLeet[T byte | rune](text []T) bool {
	changed := false
	for i := 0; i < len(text); {
		j, letters, leets := i, 0, 0
		for j < len(text) {
			r := rune(text[j])
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
				if l := leet(rune(text[k])); l != 0 {
					text[k] = T(l)
				}
			}
			changed = true
		}
		if j == i {
			j++
		}
		i = j
	}
	return changed
}

// isASCII reports whether s is all ASCII.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// normaliseASCII is normalise for ASCII text, byte by byte: the same result
// without decoding runes.
func normaliseASCII(text string) (string, bool) {
	b := make([]byte, 0, len(text))
	space := false
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			if !space {
				b = append(b, ' ')
			}
			space = true
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case repeatedPunct(b, c):
			continue
		}
		space = false
		b = append(b, c)
	}
	return string(b), readLeet(b)
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
var mentionRe = regexp.MustCompile(`(?:titled|called|named|the phrase|the sentence|the words?|such as|for example|e\.g\.|example:|like|quote|slogan|headline|says|said|saying|writes|wrote|shouts|whispers|whispered|asks|asked|replies|replied|tells|told|yells|yelled|mutters|muttered|flüstert|flüsterte|ruft|rief|fragt|fragte|betitelt|mit dem titel|der satz|zum beispiel|z\.b\.|sagt|sagte|schreibt)\W{0,3}["'“„‘«]`)

// mentioned reports whether the signal found at norm[at:] is talked about rather
// than meant: it begins inside a phrase quoted after a mention word ("a post titled
// 'Why you should never ignore previous instructions'"), or the text asks how
// attacks work. A quote elsewhere in the text does not discount an unquoted attack.
func mentioned(norm string, at int) bool {
	from := max(0, at-mentionReach) // a mention word and its quote open just before the attack
	for _, m := range mentionRe.FindAllStringIndex(norm[from:min(len(norm), at+1)], -1) {
		open, end := from+m[1], len(norm)
		if c := strings.IndexAny(norm[open:], closingQuotes); c >= 0 {
			end = open + c
		}
		if open <= at && at < end {
			return true
		}
	}
	return aboutAttacks.MatchString(norm)
}

// mentionReach is how far before an attack its mention word may stand.
const mentionReach = 256

// closingQuotes end a quoted phrase.
const closingQuotes = "\"'”“‘’»«"

// aboutAttacks are questions and requests about injection, not injections.
var aboutAttacks = regexp.MustCompile(`^(?:how (?:do|does|can|to)|what (?:is|are)|explain|describe|wie (?:funktionier|erkenn)|was (?:ist|sind)|erkläre?)\b[^.!?]*(?:prompt injection|jailbreak|injection attack)`)

// joined reports whether i is one of the sorted offsets joins.
func joined(joins []int, i int) bool {
	_, found := slices.BinarySearch(joins, i)
	return found
}
