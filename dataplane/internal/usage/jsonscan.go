package usage

import (
	"bytes"
	"encoding/json"
	"unicode/utf16"
	"unicode/utf8"
)

// The scanner below walks JSON that json.Valid has accepted (or that came out of
// json.Unmarshal), giving the exact bytes of members and elements without decoding
// them. On any other input it stays within bounds and simply stops early, so a caller
// that skips the validation gets garbage spans, never a panic.

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// skipSpace returns the index of the first non-whitespace byte of b at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// trimSpace returns b without leading and trailing JSON whitespace.
func trimSpace(b []byte) []byte {
	i, j := skipSpace(b, 0), len(b)
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

// firstByte returns the first non-whitespace byte of b, or 0 when there is none.
func firstByte(b []byte) byte {
	if i := skipSpace(b, 0); i < len(b) {
		return b[i]
	}
	return 0
}

// stringEnd returns the index just past the string whose opening quote is b[i]: past
// the first quote after it not escaped by an odd run of backslashes.
func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			break
		}
		q := j + k
		backslashes := 0
		for p := q - 1; p > i && b[p] == '\\'; p-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
	return len(b)
}

// valueEnd returns the index just past the value that starts at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	}
	for ; i < len(b); i++ { // a number or a literal
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return len(b)
}

// memberIter walks the members of a JSON object, in order, without allocating:
//
//	for it := members(obj); ; {
//		key, value, ok := it.next()
//		...
//	}
type memberIter struct {
	b []byte
	i int // where the next member's name starts; -1 when done
}

// members returns an iterator over the members of obj; it yields nothing when obj is
// not an object.
func members(obj []byte) memberIter {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return memberIter{i: -1}
	}
	return memberIter{b: obj, i: skipSpace(obj, i+1)}
}

// next returns the next member: its name as written (quotes and escapes included, see
// keyIs) and its value's bytes, or false when there are no more.
func (it *memberIter) next() (key, value []byte, ok bool) {
	b, i := it.b, it.i
	it.i = -1
	if i < 0 || i >= len(b) || b[i] != '"' {
		return nil, nil, false
	}
	keyEnd := stringEnd(b, i)
	key = b[i:keyEnd]
	if i = skipSpace(b, keyEnd); i >= len(b) || b[i] != ':' {
		return nil, nil, false
	}
	i = skipSpace(b, i+1)
	end := valueEnd(b, i)
	if end <= i {
		return nil, nil, false
	}
	if j := skipSpace(b, end); j < len(b) && b[j] == ',' {
		it.i = skipSpace(b, j+1)
	}
	return key, b[i:end], true
}

// elemIter walks the elements of a JSON array, in order, without allocating.
type elemIter struct {
	b []byte
	i int // where the next element starts; -1 when done
}

// elements returns an iterator over the elements of arr; it yields nothing when arr
// is not an array.
func elements(arr []byte) elemIter {
	i := skipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return elemIter{i: -1}
	}
	return elemIter{b: arr, i: skipSpace(arr, i+1)}
}

// next returns the next element's bytes, or false when there are no more.
func (it *elemIter) next() (value []byte, ok bool) {
	b, i := it.b, it.i
	it.i = -1
	if i < 0 || i >= len(b) || b[i] == ']' {
		return nil, false
	}
	end := valueEnd(b, i)
	if end <= i {
		return nil, false
	}
	if j := skipSpace(b, end); j < len(b) && b[j] == ',' {
		it.i = skipSpace(b, j+1)
	}
	return b[i:end], true
}

// name returns the member name key (as members gives it) decoded. It allocates only
// for a name with escapes; compare it as string(name(k)), which does not allocate.
func name(key []byte) []byte {
	if len(key) < 2 {
		return nil
	}
	if bytes.IndexByte(key, '\\') < 0 {
		return key[1 : len(key)-1]
	}
	return appendString(nil, key)
}

// keyIs reports whether key, a member name as written (see members), names name.
// Escaped names are decoded, so "\u0075sage" is "usage"; the match is exact, not
// case-folded as encoding/json's struct matching is.
func keyIs(key []byte, want string) bool {
	return string(name(key)) == want
}

// stringValue returns the JSON string raw decoded, or "" when raw is not a string.
func stringValue(raw []byte) string {
	raw = trimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	if bytes.IndexByte(raw, '\\') < 0 && raw[len(raw)-1] == '"' {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// isNull reports whether raw is JSON null or empty (an absent member).
func isNull(raw []byte) bool {
	raw = trimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// appendString appends the JSON string raw, decoded, to dst. Anything but a string
// appends nothing; a malformed escape is dropped and the rest kept. A string without
// escapes, the usual case, is copied as it is.
func appendString(dst, raw []byte) []byte {
	raw = trimSpace(raw)
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return dst
	}
	s := raw[1 : len(raw)-1]
	for {
		i := bytes.IndexByte(s, '\\')
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		if i+1 >= len(s) {
			return dst
		}
		c := s[i+1]
		s = s[i+2:]
		switch c {
		case '"', '\\', '/':
			dst = append(dst, c)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := hex4(s)
			s = s[n:]
			if n == 4 && utf16.IsSurrogate(r) {
				if len(s) >= 6 && s[0] == '\\' && s[1] == 'u' {
					if r2, n2 := hex4(s[2:]); n2 == 4 {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							r, s = d, s[6:]
						} else {
							r = utf8.RuneError
						}
					}
				} else {
					r = utf8.RuneError
				}
			}
			if n == 4 {
				dst = utf8.AppendRune(dst, r)
			}
		}
	}
}

// hex4 decodes the four hex digits at the start of s, reporting how many bytes it
// used: 4, or 0 when they are not four hex digits.
func hex4(s []byte) (rune, int) {
	if len(s) < 4 {
		return 0, 0
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, 0
		}
		r = r<<4 | rune(c)
	}
	return r, 4
}
