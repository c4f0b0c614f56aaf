package adminapi

import (
	"net/http"
	"reflect"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/portcullis-gw/portcullis/shared/apierr"
	"github.com/portcullis-gw/portcullis/shared/guardrails"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// guardrailsScanPath is the dry run of the guardrails.
const guardrailsScanPath = "/guardrails/scan"

// maxScanText bounds a dry run's text.
const maxScanText = 256 << 10

func (a *API) registerGuardrails(g *echo.Group) {
	g.POST(guardrailsScanPath, a.scanGuardrails)
}

type scanRequest struct {
	Text      string             `json:"text"`
	Direction string             `json:"direction"`
	Tier      string             `json:"tier"`
	Policy    *policy.Guardrails `json:"policy"`
}

type scanFinding struct {
	Family guardrails.Family `json:"family"`
	Type   string            `json:"type"`
	Start  int               `json:"start"`
	End    int               `json:"end"`
	Score  float64           `json:"score"`
	Action string            `json:"action"`
}

// scanGuardrails answers POST /guardrails/scan {"text", "direction", "tier" |
// "policy"}: what the data plane would do with the text under the tier's guardrail
// policy, or the policy given, or (with neither) every family flagged. It runs the
// data plane's code (guardrails.Policy.Apply); the text is neither stored nor logged.
func (a *API) scanGuardrails(c echo.Context) error {
	obj, err := readObject(c, false)
	if err != nil {
		return err
	}
	req := scanRequest{Direction: "input"}
	rep := &report{}
	decodeObject(rep, "", obj, reflect.ValueOf(&req).Elem(), reflect.ValueOf(scanRequest{Direction: "input"}))
	_, given := obj["text"]
	rep.check("text", given, "is required: the text to scan")
	rep.check("text", len(req.Text) <= maxScanText && utf8.ValidString(req.Text), "must be UTF-8 text of at most 256 KiB")
	ok, msg := oneOf(req.Direction, []string{"input", "output"})
	rep.check("direction", ok, msg)
	rep.check("policy", req.Tier == "" || req.Policy == nil, "give either tier or policy, not both")
	checkGuardrailsAt(rep, "policy.", req.Policy)
	if err := rep.err(); err != nil {
		return err
	}
	g := policy.Guardrails{PII: flagBoth, Secrets: flagBoth, Injection: flagBoth}
	switch {
	case req.Policy != nil:
		g = *req.Policy
	case req.Tier != "":
		t, err := a.st.Tiers().Get(c.Request().Context(), req.Tier)
		if err != nil {
			e := apierr.From(a.tiers().storeError(err, nil))
			if e.Code == apierr.NotFound {
				e = apierr.New(apierr.ValidationFailed, "tier: no tier named %q exists", req.Tier)
				e.Fields = []apierr.FieldError{{Field: "tier", Message: "no such tier"}}
			}
			return e
		}
		g = t.Entity.Guardrails
	}
	dir := guardrails.Input
	if req.Direction == "output" {
		dir = guardrails.Output
	}
	out := guardrails.Compile(g).Apply(dir, req.Text)
	findings := make([]scanFinding, 0, len(out.Findings))
	for _, f := range out.Findings {
		findings = append(findings, scanFinding{Family: f.Family, Type: f.Type, Start: f.Start, End: f.End, Score: f.Score,
			Action: f.Action.String()})
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]any{
		"findings": findings, "redacted": out.Text, "blocked": out.Blocked != "", "blocked_family": out.Blocked,
	})
}

// flagBoth flags a family's findings both ways: the dry run's default.
var flagBoth = policy.GuardrailFamily{Input: policy.GuardrailFlag, Output: policy.GuardrailFlag}

// checkGuardrailsAt reports the problems of g under field prefix.
func checkGuardrailsAt(r *report, prefix string, g *policy.Guardrails) {
	if g == nil {
		return
	}
	for _, p := range g.Problems(prefix) {
		r.check(p[0], false, p[1])
	}
}
