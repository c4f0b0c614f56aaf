package gatewayconfig

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Condition is a self-hosted fallback's enabled_when: the provider's requests go to
// the fallback when its breaker is open (CircuitOpen) or its error rate is above
// ErrorRateAbove (when set).
type Condition struct {
	CircuitOpen    bool
	ErrorRateAbove *float64
}

// ParseCondition reads an enabled_when expression for provider: terms joined by OR,
// each "<provider>_circuit_open" or "<provider>_error_rate > <rate>" with a rate from
// 0 to 1, as in the seed's "openai_circuit_open OR openai_error_rate > 0.1".
func ParseCondition(expr, provider string) (Condition, error) {
	toks, err := lexCondition(expr)
	if err != nil {
		return Condition{}, err
	}
	var c Condition
	i := 0
	fail := func(at int, format string, args ...any) (Condition, error) {
		return Condition{}, fmt.Errorf("enabled_when, at character %d: %s", at+1, fmt.Sprintf(format, args...))
	}
	for {
		if i >= len(toks) {
			return fail(len(expr), "expected %s_circuit_open or %s_error_rate > <rate>", provider, provider)
		}
		t := toks[i]
		switch t.text {
		case provider + "_circuit_open":
			if c.CircuitOpen {
				return fail(t.at, "%s appears twice", t.text)
			}
			c.CircuitOpen = true
			i++
		case provider + "_error_rate":
			if c.ErrorRateAbove != nil {
				return fail(t.at, "%s appears twice", t.text)
			}
			if i+1 >= len(toks) || toks[i+1].text != ">" {
				return fail(t.at, "%s must be compared with >, e.g. %s > 0.1", t.text, t.text)
			}
			if i+2 >= len(toks) {
				return fail(len(expr), "expected a rate from 0 to 1 after >")
			}
			rate, err := strconv.ParseFloat(toks[i+2].text, 64)
			if err != nil || !(rate >= 0 && rate < 1) {
				return fail(toks[i+2].at, "%q is not a rate from 0 up to (not including) 1", toks[i+2].text)
			}
			c.ErrorRateAbove = &rate
			i += 3
		default:
			if strings.HasSuffix(t.text, "_circuit_open") || strings.HasSuffix(t.text, "_error_rate") {
				return fail(t.at, "%s is another provider's: a fallback of %s depends on %s's health only", t.text, provider, provider)
			}
			return fail(t.at, "unknown term %q: use %s_circuit_open or %s_error_rate > <rate>", t.text, provider, provider)
		}
		if i == len(toks) {
			return c, nil
		}
		switch op := strings.ToUpper(toks[i].text); op {
		case "OR":
			i++
		case "AND":
			return fail(toks[i].at, "AND is not supported: the fallback takes over when any term holds, so join terms with OR")
		default:
			return fail(toks[i].at, "expected OR, found %q", toks[i].text)
		}
	}
}

type condToken struct {
	text string
	at   int // byte offset in the expression
}

// lexCondition splits an expression into words, numbers and ">".
func lexCondition(expr string) ([]condToken, error) {
	var out []condToken
	for i := 0; i < len(expr); {
		r := rune(expr[i])
		switch {
		case r == ' ' || r == '\t':
			i++
		case r == '>':
			out = append(out, condToken{">", i})
			i++
		case r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '.' || r == '-'):
			j := i
			for j < len(expr) && (isWordByte(expr[j])) {
				j++
			}
			out = append(out, condToken{expr[i:j], i})
			i = j
		default:
			return nil, fmt.Errorf("enabled_when, at character %d: unexpected %q", i+1, expr[i:i+1])
		}
	}
	return out, nil
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
}
