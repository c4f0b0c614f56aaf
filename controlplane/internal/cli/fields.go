package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/portcullis-gw/portcullis/shared/policy"
)

// fieldFlag is a flag of "<resource> create" and "<resource> update" that sets one
// field of the JSON body.
type fieldFlag struct {
	name    string // the flag, e.g. "max-choices"
	field   string // the JSON field it sets, e.g. "max_choices"
	integer bool   // the value is an integer, else a string
	usage   string
	// required, if set, is the error of a create whose body does not give the field
	// when the flag is not given either.
	required string
}

// fieldFlags lists the field flags of each resource.
var fieldFlags = map[string][]fieldFlag{
	"tiers": {
		{name: "max-choices", field: "max_choices", integer: true,
			usage: fmt.Sprintf("the most completions (n, or best_of) one request may ask for: `N` from 1 to %d, or 0 for no tier cap", policy.MaxChoicesLimit)},
		{name: "max-output-tokens", field: "max_output_tokens", integer: true,
			usage: "the largest max_tokens (or max_completion_tokens) a request may ask for: `N` tokens, or 0 for no cap"},
	},
	"residency-rules": {
		{name: "endpoint-url", field: "endpoint_url",
			usage: "the data-plane `URL` clients of this residency call, e.g. https://eu.gateway.example.com (\"\" for none)"},
	},
	"clients": {
		{name: "residency", field: "residency",
			usage:    "the client's residency: the name of a residency rule (`RULE`), or \"" + policy.ResidencyGlobal + "\" for no restriction (required by create)",
			required: `--residency is required: name a residency rule, or "` + policy.ResidencyGlobal + `" for no residency restriction`},
	},
}

// fieldSynopsis is the usage of res's field flags, e.g. " [--endpoint-url URL]", for a
// create or an update.
func fieldSynopsis(res string, create bool) string {
	var b strings.Builder
	for _, f := range fieldFlags[res] {
		arg := "VALUE"
		switch {
		case f.integer:
			arg = "N"
		case f.field == "residency":
			arg = "RULE|" + policy.ResidencyGlobal
		case strings.HasSuffix(f.field, "_url"):
			arg = "URL"
		}
		if create && f.required != "" {
			fmt.Fprintf(&b, " --%s %s", f.name, arg)
		} else {
			fmt.Fprintf(&b, " [--%s %s]", f.name, arg)
		}
	}
	return b.String()
}

// fieldValues are the field flags of one command line: JSON values by field.
type fieldValues struct {
	flags []fieldFlag
	set   map[string]json.RawMessage
}

// addFieldFlags defines res's field flags on fs.
func addFieldFlags(fs *flag.FlagSet, res string) *fieldValues {
	v := &fieldValues{flags: fieldFlags[res], set: map[string]json.RawMessage{}}
	for _, f := range v.flags {
		fs.Func(f.name, f.usage, func(s string) error {
			if f.integer {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return fmt.Errorf("want an integer")
				}
				v.set[f.field] = json.RawMessage(strconv.FormatInt(n, 10))
				return nil
			}
			raw, _ := json.Marshal(s)
			v.set[f.field] = raw
			return nil
		})
	}
	return v
}

// given reports whether some field flag was given.
func (v *fieldValues) given() bool { return len(v.set) > 0 }

// apply adds the fields of the given flags to the JSON body data (nil: none, an empty
// object), and on create checks that every required field is there. A field may come
// from the body or from its flag, not both.
func (v *fieldValues) apply(data []byte, create bool) ([]byte, error) {
	needed := false
	for _, f := range v.flags {
		if create && f.required != "" {
			needed = true
		}
	}
	if !v.given() && !needed {
		return data, nil
	}
	obj := map[string]json.RawMessage{}
	if data != nil {
		if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
			return nil, fmt.Errorf("%w: the body must be a JSON object", ErrUsage)
		}
	}
	for _, f := range v.flags {
		val, given := v.set[f.field]
		_, inBody := obj[f.field]
		switch {
		case given && inBody:
			return nil, fmt.Errorf("%w: %s is given twice: in the body and as --%s", ErrUsage, f.field, f.name)
		case given:
			obj[f.field] = val
		case create && f.required != "" && !inBody:
			return nil, fmt.Errorf("%w: %s", ErrUsage, f.required)
		}
	}
	return json.Marshal(obj)
}
