package api

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"encoding/json"
	"fmt"

	"github.com/portcullis-gw/portcullis/shared/audit"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/guardrails"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// guardFlag is one kind of finding the guardrails made of a request, counted: for
// the audit event and the metrics, never with its text.
type guardFlag struct {
	Family    guardrails.Family
	Type      string
	Direction guardrails.Direction
	Action    guardrails.Action
}

// guarded is what the client's guardrails made of a request so far.
type guarded struct {
	policy *guardrails.Policy
	flags  map[guardFlag]int
	// redactor numbers the placeholders of the request's input (and answer);
	// inputOriginals are the input's placeholders and values, for pseudonymisation,
	// and restorer puts them back.
	redactor       *guardrails.Redactor
	inputOriginals map[string]string
	restorer       *strings.Replacer
	// classifier scores the input for injection where the policy asks;
	// classifierErr is its last failure under fail_open, for the log.
	classifier    Classifier
	classifierErr error
}

func newGuarded(p *guardrails.Policy, c Classifier) *guarded {
	return &guarded{policy: p, flags: map[guardFlag]int{}, redactor: guardrails.NewRedactor(), classifier: c}
}

// text applies the policy to one text in direction d: the text to send on, and a
// content_blocked error when a family blocks it.
func (g *guarded) text(d guardrails.Direction, s string) (string, error) {
	out := g.policy.ApplyWith(d, s, g.redactor)
	for _, f := range out.Findings {
		g.flags[guardFlag{Family: f.Family, Type: f.Type, Direction: d, Action: f.Action}]++
	}
	if out.Blocked != "" {
		return s, contentBlocked(out.Blocked, d)
	}
	return out.Text, nil
}

// contentBlocked is the 400 of a text a family blocks: it names the family and the
// direction, never the content.
func contentBlocked(f guardrails.Family, d guardrails.Direction) *apierr.Error {
	what := "request"
	if d == guardrails.Output {
		what = "answer"
	}
	return apierr.New(apierr.ContentBlocked, "content_blocked: the %s was blocked by the %s guardrail", what, f)
}

// guardInput applies the client's input guardrails to req in place: every text of
// its messages (each role, system prompts, tool results and tool call arguments),
// its prompt or its embedding input is scanned; redacted texts replace the
// originals in the body sent upstream, and a blocking family refuses the request.
// The fields are decoded only when the policy is on for input.
func (g *guarded) guardInput(ctx context.Context, req *request) error {
	if !g.policy.On(guardrails.Input) {
		return nil
	}
	var fields []string
	switch req.op {
	case policy.OpChat, policy.OpMessages:
		fields = []string{"system", "messages"}
	case policy.OpTextCompletion:
		fields = []string{"prompt"}
	case policy.OpEmbeddings:
		fields = []string{"input"}
	}
	var texts []string // for the classifier
	for _, name := range fields {
		raw, ok := req.fields[name]
		if !ok || string(raw) == "null" {
			continue
		}
		v, err := decodeTree(raw)
		if err != nil {
			continue // the upstream judges a malformed member, as it does unguarded
		}
		changed := false
		var walkErr error
		rewrite := func(s string) string {
			if walkErr != nil {
				return s
			}
			out, err := g.text(guardrails.Input, s)
			if err != nil {
				walkErr = err
				return s
			}
			texts = append(texts, out) // what the upstream would see: redacted
			if out != s {
				changed = true
			}
			return out
		}
		switch name {
		case "messages":
			v = walkMessages(v, rewrite)
		case "system":
			v = walkContent(v, rewrite)
		default: // a prompt or an input: a string or a list of them
			v = walkStrings(v, rewrite)
		}
		if walkErr != nil {
			return walkErr
		}
		if changed {
			enc, err := encodeTree(v)
			if err != nil {
				return apierr.Wrap(apierr.Internal, err, "internal error")
			}
			req.fields[name] = enc
		}
	}
	g.inputOriginals = maps.Clone(g.redactor.Originals())
	return g.classify(ctx, texts)
}

// classify asks the classifier about the request's texts when the policy wants it:
// a score from the injection threshold on is an injection finding of type
// "classifier", acted on like the heuristic's. A failed call counts as no finding
// under fail_open, and refuses the request (503 guardrail_unavailable) under
// fail_closed.
func (g *guarded) classify(ctx context.Context, texts []string) error {
	p := g.policy
	a := p.Action(guardrails.Input, guardrails.Injection)
	if p.Classifier == "" || a == guardrails.Off || len(texts) == 0 {
		return nil
	}
	var scores []float64
	err := errNoClassifier
	if g.classifier != nil {
		scores, err = g.classifier.Score(ctx, texts)
	}
	if err != nil {
		if p.Classifier == policy.ClassifierFailClosed {
			return apierr.Wrap(apierr.GuardrailUnavailable, err, "the request could not be checked for prompt injection; try again later")
		}
		g.classifierErr = err
		return nil
	}
	for _, sc := range scores {
		if sc < p.InjectionThreshold {
			continue
		}
		g.flags[guardFlag{Family: guardrails.Injection, Type: "classifier", Direction: guardrails.Input, Action: a}]++
		if a == guardrails.Block {
			return contentBlocked(guardrails.Injection, guardrails.Input)
		}
	}
	return nil
}

// errNoClassifier is a classifier call on a data plane without a classifier.
var errNoClassifier = errors.New("no classifier is configured on this data plane (PORTCULLIS_GUARDRAILS_CLASSIFIER_URL)")

// decodeTree decodes raw JSON keeping numbers as written.
func decodeTree(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// encodeTree encodes v without escaping HTML, so that the text reaches the
// upstream as the client wrote it.
func encodeTree(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode guarded request: %w", err)
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// walkMessages rewrites the text of a messages array: each message's content, and
// its tool calls' arguments (OpenAI).
func walkMessages(v any, fn func(string) string) any {
	msgs, ok := v.([]any)
	if !ok {
		return v
	}
	for _, m := range msgs {
		obj, ok := m.(map[string]any)
		if !ok {
			continue
		}
		if c, ok := obj["content"]; ok {
			obj["content"] = walkContent(c, fn)
		}
		calls, _ := obj["tool_calls"].([]any)
		for _, call := range calls {
			fnObj, _ := call.(map[string]any)
			fun, _ := fnObj["function"].(map[string]any)
			if args, ok := fun["arguments"].(string); ok {
				fun["arguments"] = fn(args)
			}
		}
	}
	return v
}

// walkContent rewrites a content: a string, or an array of parts whose text parts
// (OpenAI's {"type":"text","text"}, Anthropic's text blocks) and tool results
// (Anthropic's {"type":"tool_result","content"}) count.
func walkContent(v any, fn func(string) string) any {
	switch c := v.(type) {
	case string:
		return fn(c)
	case []any:
		for _, p := range c {
			part, ok := p.(map[string]any)
			if !ok {
				continue
			}
			switch part["type"] {
			case "text", "input_text":
				if t, ok := part["text"].(string); ok {
					part["text"] = fn(t)
				}
			case "tool_result":
				if inner, ok := part["content"]; ok {
					part["content"] = walkContent(inner, fn)
				}
			}
		}
	}
	return v
}

// walkStrings rewrites a string or each string of an array (arrays of token ids
// carry no text).
func walkStrings(v any, fn func(string) string) any {
	switch c := v.(type) {
	case string:
		return fn(c)
	case []any:
		for i, el := range c {
			if s, ok := el.(string); ok {
				c[i] = fn(s)
			}
		}
	}
	return v
}

// auditFlags are the flags in the audit event's form, in a stable order.
func (g *guarded) auditFlags() []audit.Flag {
	if g == nil || len(g.flags) == 0 {
		return nil
	}
	out := make([]audit.Flag, 0, len(g.flags))
	for f, n := range g.flags {
		out = append(out, audit.Flag{Family: string(f.Family), Type: f.Type, Direction: f.Direction.String(),
			Action: f.Action.String(), Count: n})
	}
	slices.SortFunc(out, func(a, b audit.Flag) int {
		return cmp.Or(cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Family, b.Family), cmp.Compare(a.Type, b.Type),
			cmp.Compare(a.Action, b.Action))
	})
	return out
}

// guardMetrics counts the guardrails' findings by family, type, direction and
// action.
type guardMetrics struct{ findings *prometheus.CounterVec }

func newGuardMetrics(reg prometheus.Registerer) *guardMetrics {
	m := &guardMetrics{findings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "portcullis_guardrail_findings_total",
		Help: "Guardrail findings in requests and answers, by family, type, direction and action taken."},
		[]string{"family", "type", "direction", "action"})}
	if reg != nil {
		reg.MustRegister(m.findings)
	}
	return m
}

// count adds g's findings to the counters.
func (m *guardMetrics) count(g *guarded) {
	if m == nil || g == nil {
		return
	}
	for f, n := range g.flags {
		m.findings.WithLabelValues(string(f.Family), f.Type, f.Direction.String(), f.Action.String()).Add(float64(n))
	}
}

// guardsAnswer reports whether the answer needs the guardrails: an output family is
// on, or input placeholders are to be put back.
func (g *guarded) guardsAnswer() bool {
	return g != nil && (g.policy.On(guardrails.Output) || g.pseudonymise())
}

// pseudonymise reports whether input placeholders go back to their originals in the
// answer.
func (g *guarded) pseudonymise() bool {
	return g != nil && g.policy.Pseudonymise && len(g.inputOriginals) > 0
}

// restore puts the originals of input placeholders back into s.
func (g *guarded) restore(s string) string {
	if !g.pseudonymise() || !strings.Contains(s, "[") {
		return s
	}
	if g.restorer == nil {
		pairs := make([]string, 0, 2*len(g.inputOriginals))
		for ph, v := range g.inputOriginals {
			pairs = append(pairs, ph, v)
		}
		g.restorer = strings.NewReplacer(pairs...)
	}
	return g.restorer.Replace(s)
}

// answerText applies the output policy to one text of the answer, then puts input
// placeholders back (the model saw placeholders; the user sees the values).
func (g *guarded) answerText(s string) (string, error) {
	out := s
	if g.policy.On(guardrails.Output) {
		var err error
		if out, err = g.text(guardrails.Output, s); err != nil {
			return s, err
		}
	}
	return g.restore(out), nil
}

// guardAnswer applies the guardrails to a whole answer in the client's API: the
// text of every choice (OpenAI: the message content and tool call arguments, a
// completion's text) or content block (Anthropic). It returns the body to send, or
// content_blocked; the body is re-encoded only when a text changed.
func (g *guarded) guardAnswer(api clientAPI, body []byte) ([]byte, error) {
	v, err := decodeTree(body)
	if err != nil {
		return body, nil // not JSON: relayed as it is, as unguarded
	}
	changed := false
	var walkErr error
	rewrite := func(s string) string {
		if walkErr != nil {
			return s
		}
		out, err := g.answerText(s)
		if err != nil {
			walkErr = err
			return s
		}
		if out != s {
			changed = true
		}
		return out
	}
	obj, _ := v.(map[string]any)
	if api == apiAnthropic {
		if c, ok := obj["content"]; ok {
			obj["content"] = walkContent(c, rewrite)
		}
	} else {
		choices, _ := obj["choices"].([]any)
		for _, ch := range choices {
			choice, _ := ch.(map[string]any)
			if msg, ok := choice["message"]; ok {
				walkMessages([]any{msg}, rewrite)
			}
			if text, ok := choice["text"].(string); ok {
				choice["text"] = rewrite(text)
			}
		}
	}
	if walkErr != nil {
		return nil, walkErr
	}
	if !changed {
		return body, nil
	}
	return encodeTree(v)
}
