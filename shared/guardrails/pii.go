package guardrails

import (
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// PII types.
const (
	TypeEmail = "email"
	TypePhone = "phone"
	TypeCard  = "card"
	TypeIBAN  = "iban"
	TypeSSN   = "ssn"
	TypeIP    = "ip"
)

// phoneRegions are the regions a phone number written without a country code is
// tried in, most likely first.
var phoneRegions = []string{"DE", "US", "GB", "FR", "AT", "CH", "NL", "IT", "ES"}

// scanPII appends the personal data in text to out.
func scanPII(text string, out []Finding) []Finding {
	start := len(out)
	out = scanEmails(text, out)
	out = scanDigits(text, out)
	out = scanIPv6(text, out)
	// A phone candidate inside a card, an IBAN, an SSN or an address is not a phone.
	pii := out[start:]
	kept := pii[:0]
	for _, f := range pii {
		if f.Type == TypePhone && overlapsOther(f, pii) {
			continue
		}
		kept = append(kept, f)
	}
	return out[:start+len(kept)]
}

func overlapsOther(f Finding, all []Finding) bool {
	for _, g := range all {
		if g.Type != TypePhone && g.Start < f.End && f.Start < g.End {
			return true
		}
	}
	return false
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// scanEmails finds addresses around each '@'.
func scanEmails(text string, out []Finding) []Finding {
	for off := 0; ; {
		i := strings.IndexByte(text[off:], '@')
		if i < 0 {
			return out
		}
		at := off + i
		off = at + 1
		s := at
		for s > 0 && isLocalChar(text[s-1]) {
			s--
		}
		for s < at && (text[s] == '.' || text[s] == '-') { // no leading punctuation
			s++
		}
		e := at + 1
		for e < len(text) && (isAlnum(text[e]) || text[e] == '.' || text[e] == '-') {
			e++
		}
		for e > at+1 && (text[e-1] == '.' || text[e-1] == '-') {
			e--
		}
		if at-s < 1 || at-s > 64 || !validDomain(text[at+1:e]) {
			continue
		}
		if s > 0 && (text[s-1] == ':' || text[s-1] == '/') || inURL(text, s) {
			continue // the user and password of a URL (scheme://user:password@host)
		}
		out = append(out, Finding{Family: PII, Type: TypeEmail, Start: s, End: e, Score: 1})
		off = e
	}
}

// inURL reports whether text[i] lies in the userinfo of a URL
// (scheme://user:password@host): "://" comes before it in the same run of
// non-space characters (at most 256 bytes back), with no path, query or quote
// between.
func inURL(text string, i int) bool {
	start := i
	for start > 0 && i-start < 256 && !isSpaceByte(text[start-1]) {
		start--
	}
	k := strings.LastIndex(text[start:i], "://")
	// userinfo runs from the scheme to the '@' without a path, query or quote (a raw
	// '#' is common in real passwords)
	return k >= 0 && !strings.ContainsAny(text[start+k+3:i], "/?@\"'<>{}[],")
}

func isLocalChar(c byte) bool {
	return isAlnum(c) || strings.IndexByte("._%+-", c) >= 0
}

// validDomain reports whether d is a host name with a top-level domain of letters.
func validDomain(d string) bool {
	if len(d) < 4 || len(d) > 253 {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
	}
	tld := labels[len(labels)-1]
	if len(tld) < 2 {
		return false
	}
	for i := 0; i < len(tld); i++ {
		if !isLetter(tld[i]) {
			return false
		}
	}
	return true
}

// scanDigits finds the types that start with a digit run, or with '+', or with an
// IBAN's country code: cards, SSNs, IPv4 addresses, IBANs and phone numbers.
func scanDigits(text string, out []Finding) []Finding {
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case isDigit(c):
			if i > 0 && (isAlnum(text[i-1]) || text[i-1] == '.' || text[i-1] == '_') ||
				i > 1 && text[i-1] == '-' && isAlnum(text[i-2]) {
				continue // inside a word, a hex string, a dotted number or a dashed token (xoxb-123-456)
			}
			end, ok := 0, false
			if out, end, ok = digitRun(text, i, out); ok {
				i = end - 1
			}
		case c == '+' && i+1 < len(text) && isDigit(text[i+1]):
			if f, ok := phoneAt(text, i); ok {
				out = append(out, f)
				i = f.End - 1
			}
		case 'A' <= c && c <= 'Z' && i+1 < len(text) && 'A' <= text[i+1] && text[i+1] <= 'Z' && (i == 0 || !isAlnum(text[i-1])):
			if f, ok := ibanAt(text, i); ok {
				out = append(out, f)
				i = f.End - 1
			}
		}
	}
	return out
}

// digitRun classifies the digits starting at i and returns where it stopped.
func digitRun(text string, i int, out []Finding) ([]Finding, int, bool) {
	if f, ok := ipv4At(text, i); ok {
		return append(out, f), f.End, true
	}
	if f, ok := ssnAt(text, i); ok {
		return append(out, f), f.End, true
	}
	if f, ok := cardAt(text, i); ok {
		return append(out, f), f.End, true
	}
	if f, ok := phoneAt(text, i); ok {
		return append(out, f), f.End, true
	}
	// Skip the rest of this run of digits.
	e := i
	for e < len(text) && isDigit(text[e]) {
		e++
	}
	return out, e, true
}

// ipv4At reads a dotted quad at i, each part at most 255, not part of a longer
// dotted number (a version, an OID).
func ipv4At(text string, i int) (Finding, bool) {
	e, parts := i, 0
	for parts < 4 {
		s := e
		for e < len(text) && isDigit(text[e]) && e-s < 3 {
			e++
		}
		if e == s || e < len(text) && isDigit(text[e]) {
			return Finding{}, false
		}
		parts++
		if parts < 4 {
			if e >= len(text) || text[e] != '.' {
				return Finding{}, false
			}
			e++
		}
	}
	if e < len(text) && (isAlnum(text[e]) || text[e] == '.' && e+1 < len(text) && isDigit(text[e+1])) {
		return Finding{}, false
	}
	if _, err := netip.ParseAddr(text[i:e]); err != nil {
		return Finding{}, false // a part above 255, or a leading zero
	}
	return Finding{Family: PII, Type: TypeIP, Start: i, End: e, Score: 0.9}, true
}

// scanIPv6 finds IPv6 addresses: runs of hex digits and colons with at least two
// colons that parse as one.
func scanIPv6(text string, out []Finding) []Finding {
	for off := 0; ; {
		i := strings.Index(text[off:], ":")
		if i < 0 {
			return out
		}
		c := off + i
		s := c
		for s > 0 && (isHex(text[s-1]) || text[s-1] == ':') {
			s--
		}
		e := c
		for e < len(text) && (isHex(text[e]) || text[e] == ':' || text[e] == '.' && e+1 < len(text) && isDigit(text[e+1])) {
			e++
		}
		off = e
		if strings.Count(text[s:e], ":") < 2 || s > 0 && (isAlnum(text[s-1])) || e < len(text) && isAlnum(text[e]) {
			continue
		}
		a, err := netip.ParseAddr(text[s:e])
		if err != nil || !a.Is6() || a.Is4In6() && !strings.Contains(text[s:e], ".") {
			continue
		}
		out = append(out, Finding{Family: PII, Type: TypeIP, Start: s, End: e, Score: 0.9})
	}
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// ssnAt reads a US social security number NNN-NN-NNNN with a valid area (not 000,
// 666 or 900–999), group (not 00) and serial (not 0000).
func ssnAt(text string, i int) (Finding, bool) {
	if i+11 > len(text) || text[i+3] != '-' || text[i+6] != '-' {
		return Finding{}, false
	}
	s := text[i : i+11]
	for k, c := range []byte(s) {
		if k != 3 && k != 6 && !isDigit(c) {
			return Finding{}, false
		}
	}
	if i+11 < len(text) && (isAlnum(text[i+11]) || text[i+11] == '-') {
		return Finding{}, false
	}
	area, group, serial := s[:3], s[4:6], s[7:]
	if area == "000" || area == "666" || area[0] == '9' || group == "00" || serial == "0000" {
		return Finding{}, false
	}
	return Finding{Family: PII, Type: TypeSSN, Start: i, End: i + 11, Score: 0.9}, true
}

// cardAt reads 13 to 19 digits, in groups separated by single spaces or dashes,
// whose issuer prefix and length fit a card network and whose Luhn checksum holds;
// not right after a word that makes it an order, invoice or other reference number.
func cardAt(text string, i int) (Finding, bool) {
	var digits [19]byte
	n, e, sep := 0, i, byte(0)
	for e < len(text) {
		c := text[e]
		if isDigit(c) {
			if n == len(digits) {
				return Finding{}, false
			}
			digits[n] = c
			n++
			e++
			continue
		}
		if (c == ' ' || c == '-') && e+1 < len(text) && isDigit(text[e+1]) && (sep == 0 || sep == c) {
			sep = c
			e++
			continue
		}
		break
	}
	if n < 13 || e < len(text) && isAlnum(text[e]) {
		return Finding{}, false
	}
	d := string(digits[:n])
	if !cardNetwork(d) || !luhn(d) || referenceContext(text, i) {
		return Finding{}, false
	}
	return Finding{Family: PII, Type: TypeCard, Start: i, End: e, Score: 1}, true
}

// cardNetwork reports whether the issuer prefix and the length of d fit a card
// network: Visa, Mastercard, American Express, Discover, JCB, Diners, UnionPay, Maestro.
func cardNetwork(d string) bool {
	n := len(d)
	p2 := atoi(d[:2])
	p4 := atoi(d[:4])
	switch {
	case d[0] == '4':
		return n == 13 || n == 16 || n == 19
	case 51 <= p2 && p2 <= 55, 2221 <= p4 && p4 <= 2720:
		return n == 16
	case p2 == 34 || p2 == 37:
		return n == 15
	case p4 == 6011 || p2 == 65 || 644 <= atoi(d[:3]) && atoi(d[:3]) <= 649:
		return n >= 16
	case 3528 <= p4 && p4 <= 3589:
		return n >= 16
	case 300 <= atoi(d[:3]) && atoi(d[:3]) <= 305, p2 == 36, p2 == 38:
		return n >= 14
	case p2 == 62:
		return n >= 16
	case p2 == 50, 56 <= p2 && p2 <= 69:
		return n >= 12
	}
	return false
}

func atoi(s string) int {
	v := 0
	for i := 0; i < len(s); i++ {
		v = v*10 + int(s[i]-'0')
	}
	return v
}

// luhn reports whether the digits d pass the Luhn checksum.
func luhn(d string) bool {
	sum, double := 0, false
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// referenceWords mark a number right after them as a reference, not personal data.
var referenceWords = []string{"order", "invoice", "ticket", "tracking", "reference", "ref", "id", "no.", "#",
	"bestellung", "bestellnummer", "rechnung", "auftrag", "kundennummer", "sendung", "build", "version", "meeting"}

// referenceContext reports whether a reference word ends just before text[i]
// (ignoring spaces, ':' and '#').
func referenceContext(text string, i int) bool {
	j := i
	for j > 0 && (text[j-1] == ' ' || text[j-1] == ':' || text[j-1] == '#' || text[j-1] == '\t') {
		j--
	}
	if j < i && text[j] == '#' {
		return true
	}
	s := j
	for s > 0 && j-s < 16 && (isLetter(text[s-1]) || text[s-1] == '.') {
		s--
	}
	w := strings.ToLower(text[s:j])
	for _, r := range referenceWords {
		if w == r || strings.HasSuffix(w, r) && len(r) > 3 {
			return true
		}
	}
	return false
}

// phoneWords, within a few words before a number written without a country code,
// make it a phone number.
var phoneWords = []string{"phone", "tel", "mobile", "cell", "call", "contact", "fax", "whatsapp", "sms", "reach", "dial",
	"telefon", "handy", "mobil", "anruf", "ruf ", "rufen", "erreich", "unter", "rückruf", "durchwahl", "hotline", "nummer:",
	"téléphone", "telefono", "teléfono", "tél", "ring", "text me", "number is", "nummer ist"}

// phoneAt reads a phone number at i: "+" or "00" and a country code, validated for
// that country; or a national number, valid in one of phoneRegions and preceded by a
// word that speaks of phoning.
func phoneAt(text string, i int) (Finding, bool) {
	e, digits, last := i, 0, i
	if text[e] == '+' {
		e++
	}
	for e < len(text) && e-i < 32 {
		c := text[e]
		switch {
		case isDigit(c):
			digits++
			e++
			last = e
			continue
		case c == ' ' || c == '-' || c == '/' || c == '.' || c == '(' || c == ')':
			if c == ' ' && e+1 < len(text) && text[e+1] == ' ' {
				break
			}
			e++
			continue
		}
		break
	}
	e = last
	if digits < 7 || digits > 15 || e < len(text) && isAlnum(text[e]) {
		return Finding{}, false
	}
	s := text[i:e]
	if looksLikeDate(s) {
		return Finding{}, false
	}
	international := s[0] == '+' || strings.HasPrefix(s, "00")
	if international {
		if strings.HasPrefix(s, "00") {
			s = "+" + s[2:]
		}
		n, err := phonenumbers.Parse(s, "ZZ")
		if err != nil || !phonenumbers.IsValidNumber(n) {
			return Finding{}, false
		}
		return Finding{Family: PII, Type: TypePhone, Start: i, End: e, Score: 0.95}, true
	}
	if referenceContext(text, i) || !phoneContext(text, i) {
		return Finding{}, false
	}
	for _, r := range phoneRegions {
		if n, err := phonenumbers.Parse(s, r); err == nil && phonenumbers.IsValidNumber(n) {
			return Finding{Family: PII, Type: TypePhone, Start: i, End: e, Score: 0.8}, true
		}
	}
	return Finding{}, false
}

// phoneContext reports whether a phone word begins a word among the 48 bytes
// before text[i] ("tel" in "Tel.", not in "Bestellung").
func phoneContext(text string, i int) bool {
	from := max(0, i-48)
	w := strings.ToLower(text[from:i])
	for _, p := range phoneWords {
		for off := 0; ; {
			k := strings.Index(w[off:], p)
			if k < 0 {
				break
			}
			k += off
			if r, _ := utf8.DecodeLastRuneInString(text[:from+k]); !unicode.IsLetter(r) && !unicode.IsDigit(r) {
				return true
			}
			off = k + 1
		}
	}
	return false
}

// looksLikeDate reports whether s is a date such as 2024-09-24 or 24.09.2024.
func looksLikeDate(s string) bool {
	if len(s) != 10 {
		return false
	}
	dash := s[4] == '-' && s[7] == '-' || s[4] == '/' && s[7] == '/'
	dot := s[2] == '.' && s[5] == '.' || s[2] == '/' && s[5] == '/' || s[2] == '-' && s[5] == '-'
	return dash || dot
}

// ibanLength is each IBAN country's length.
var ibanLength = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21,
	"CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
	"GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26,
	"IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
	"ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
	"QA": 29, "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29,
	"VG": 24, "XK": 20,
}

// ibanAt reads an IBAN at i (with or without spaces in groups of four) whose
// country length and mod-97 checksum hold.
func ibanAt(text string, i int) (Finding, bool) {
	want, ok := ibanLength[text[i:i+2]]
	if !ok || i+4 > len(text) || !isDigit(text[i+2]) || !isDigit(text[i+3]) {
		return Finding{}, false
	}
	var b [34]byte
	n, e := 0, i
	for e < len(text) && n < want {
		c := text[e]
		switch {
		case isAlnum(c):
			b[n] = upper(c)
			n++
			e++
		case c == ' ' && e+1 < len(text) && isAlnum(text[e+1]) && n%4 == 0:
			e++
		default:
			goto done
		}
	}
done:
	if n != want || e < len(text) && isAlnum(text[e]) {
		return Finding{}, false
	}
	if !mod97(string(b[:n])) {
		return Finding{}, false
	}
	return Finding{Family: PII, Type: TypeIBAN, Start: i, End: e, Score: 1}, true
}

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}

// mod97 reports whether the IBAN s (upper case, no spaces) has a valid checksum.
func mod97(s string) bool {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
		} else {
			v := int(c-'A') + 10
			r = (r*100 + v) % 97
		}
	}
	for k := 4; k < len(s); k++ {
		add(s[k])
	}
	for k := 0; k < 4; k++ {
		add(s[k])
	}
	return r == 1
}
