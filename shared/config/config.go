// Package config loads flags whose every value can also come from a PORTCULLIS_*
// environment variable, in one pass: defaults, then the environment, then flags. Each
// binary declares its keys with a Loader, parses once, then validates the whole result
// and reports every problem together (see Problems).
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// EnvPrefix is prepended to every key's environment variable.
const EnvPrefix = "PORTCULLIS_"

// EnvName is the environment variable of flag name, e.g. "jwt-issuer" gives
// PORTCULLIS_JWT_ISSUER.
func EnvName(name string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Loader declares keys on a flag set and fills them from the environment and args.
// It is not safe for concurrent use.
type Loader struct {
	fs *flag.FlagSet
}

// NewLoader returns a Loader for the command name; usage text goes to out.
func NewLoader(name string, out io.Writer) *Loader {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return &Loader{fs: fs}
}

// FlagSet exposes the underlying flag set, e.g. to print defaults.
func (l *Loader) FlagSet() *flag.FlagSet { return l.fs }

func (l *Loader) help(name, usage string) string { return usage + " (env " + EnvName(name) + ")" }

// String declares a string key.
func (l *Loader) String(p *string, name, def, usage string) {
	l.fs.StringVar(p, name, def, l.help(name, usage))
}

// Bool declares a boolean key.
func (l *Loader) Bool(p *bool, name string, def bool, usage string) {
	l.fs.BoolVar(p, name, def, l.help(name, usage))
}

// Int declares an integer key.
func (l *Loader) Int(p *int, name string, def int, usage string) {
	l.fs.IntVar(p, name, def, l.help(name, usage))
}

// Int64 declares a 64-bit integer key.
func (l *Loader) Int64(p *int64, name string, def int64, usage string) {
	l.fs.Int64Var(p, name, def, l.help(name, usage))
}

// Float64 declares a floating-point key.
func (l *Loader) Float64(p *float64, name string, def float64, usage string) {
	l.fs.Float64Var(p, name, def, l.help(name, usage))
}

// Duration declares a duration key (e.g. "30s").
func (l *Loader) Duration(p *time.Duration, name string, def time.Duration, usage string) {
	l.fs.DurationVar(p, name, def, l.help(name, usage))
}

// Parse applies the environment (looked up with getenv) and then args. It reports
// every unparsable value at once, naming the key and the bad value. Positional
// arguments left after the flags are returned.
func (l *Loader) Parse(args []string, getenv func(string) string) ([]string, error) {
	var errs []error
	l.fs.VisitAll(func(f *flag.Flag) {
		env := EnvName(f.Name)
		v := getenv(env)
		if v == "" {
			return
		}
		if err := l.fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %v", env, v, unwrapFlagErr(err)))
		}
	})
	if err := l.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return l.fs.Args(), nil
}

func unwrapFlagErr(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

// Problems collects validation problems so that all of them are reported together.
type Problems struct {
	errs []error
}

// Add records that key has the bad value for the reason given.
func (p *Problems) Add(key string, value any, reason string) {
	p.errs = append(p.errs, fmt.Errorf("%s=%q: %s", EnvName(key), fmt.Sprint(value), reason))
}

// AddEnv records that the environment variable env, one without a flag and outside
// the PORTCULLIS_ prefix (such as OpenTelemetry's OTEL_*), has the bad value for
// the reason given.
func (p *Problems) AddEnv(env string, value any, reason string) {
	p.errs = append(p.errs, fmt.Errorf("%s=%q: %s", env, fmt.Sprint(value), reason))
}

// Err returns every recorded problem joined, or nil.
func (p *Problems) Err() error { return errors.Join(p.errs...) }
