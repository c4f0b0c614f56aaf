package guardrails

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/portcullis-gw/portcullis/shared/guardrails"
)

// Counts are one family's item-level confusion counts.
type Counts struct{ TP, FP, FN, TN int }

// Precision, Recall and F1 of the counts (1 where there is nothing to get wrong).
func (c Counts) Precision() float64 { return ratio(c.TP, c.TP+c.FP) }
func (c Counts) Recall() float64    { return ratio(c.TP, c.TP+c.FN) }
func (c Counts) F1() float64 {
	p, r := c.Precision(), c.Recall()
	if p+r == 0 {
		return 0
	}
	return 2 * p * r / (p + r)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// Report is the evaluation of a set of items.
type Report struct {
	Items    int
	Families map[guardrails.Family]*Counts
	// HardNegatives is how many items of source "hard_negative" (or a source
	// naming it) there were, and HardNegativeFP how many had any finding.
	HardNegatives, HardNegativeFP int
	// Misses lists the items scored wrong, by id and family (never their text).
	Misses []string
}

// familyOf is the family of an evaluation label: "pii.email" → pii,
// "secret.aws_key" → secrets, "injection" → injection.
func familyOf(label string) guardrails.Family {
	switch {
	case strings.HasPrefix(label, "pii."):
		return guardrails.PII
	case strings.HasPrefix(label, "secret."):
		return guardrails.Secrets
	case strings.HasPrefix(label, "injection"):
		return guardrails.Injection
	}
	return ""
}

// Evaluate scans every item with every family and scores it per family: an item
// is positive for a family when one of its labels is of that family, and
// predicted so when one finding is, at the default threshold.
func Evaluate(items []Item) Report {
	rep := Report{Items: len(items), Families: map[guardrails.Family]*Counts{}}
	for _, f := range guardrails.Families {
		rep.Families[f] = &Counts{}
	}
	for _, it := range items {
		var findings []guardrails.Finding
		for _, f := range guardrails.Scan(it.Text) {
			if f.Score >= guardrails.DefaultThreshold {
				findings = append(findings, f)
			}
		}
		if strings.Contains(it.Source, "hard_negative") {
			rep.HardNegatives++
			if len(findings) > 0 {
				rep.HardNegativeFP++
			}
		}
		for _, f := range guardrails.Families {
			want := slices.ContainsFunc(it.Labels, func(l string) bool { return familyOf(l) == f })
			got := slices.ContainsFunc(findings, func(x guardrails.Finding) bool { return x.Family == f })
			c := rep.Families[f]
			switch {
			case want && got:
				c.TP++
			case !want && got:
				c.FP++
				rep.Misses = append(rep.Misses, fmt.Sprintf("%s: %s false positive (%s)", it.ID, f, typesOf(findings, f)))
			case want && !got:
				c.FN++
				rep.Misses = append(rep.Misses, fmt.Sprintf("%s: %s missed (%s)", it.ID, f, strings.Join(it.Labels, ",")))
			default:
				c.TN++
			}
		}
	}
	return rep
}

func typesOf(fs []guardrails.Finding, f guardrails.Family) string {
	var out []string
	for _, x := range fs {
		if x.Family == f && !slices.Contains(out, x.Type) {
			out = append(out, x.Type)
		}
	}
	return strings.Join(out, ",")
}

// Print writes the report as a table.
func (r Report) Print(w io.Writer, name string) {
	fmt.Fprintf(w, "%s: %d items\n", name, r.Items)
	if r.Items == 0 {
		return
	}
	fmt.Fprintf(w, "  %-10s %9s %9s %9s %5s %5s %5s\n", "family", "precision", "recall", "F1", "TP", "FP", "FN")
	for _, f := range guardrails.Families {
		c := r.Families[f]
		fmt.Fprintf(w, "  %-10s %9.3f %9.3f %9.3f %5d %5d %5d\n", f, c.Precision(), c.Recall(), c.F1(), c.TP, c.FP, c.FN)
	}
	if r.HardNegatives > 0 {
		fmt.Fprintf(w, "  hard negatives with a finding: %d of %d (%.1f%%)\n", r.HardNegativeFP, r.HardNegatives,
			100*float64(r.HardNegativeFP)/float64(r.HardNegatives))
	}
}

// ReadItems reads a JSON-lines file of items, gzipped or not.
func ReadItems(path string) ([]Item, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		z, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		r = z
	}
	var items []Item
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var it Item
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		if it.Labels == nil {
			it.Labels = []string{}
		}
		items = append(items, it)
	}
	return items, sc.Err()
}
