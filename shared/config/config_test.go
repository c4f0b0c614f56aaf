package config

import (
	"io"
	"strings"
	"testing"
	"time"
)

type testConfig struct {
	Listen  string
	Verbose bool
	Workers int
	Timeout time.Duration
}

func load(args []string, env map[string]string) (testConfig, []string, error) {
	var c testConfig
	l := NewLoader("test", io.Discard)
	l.String(&c.Listen, "listen", "127.0.0.1:1", "listen address")
	l.Bool(&c.Verbose, "verbose", false, "verbose")
	l.Int(&c.Workers, "workers", 2, "workers")
	l.Duration(&c.Timeout, "timeout", time.Second, "timeout")
	rest, err := l.Parse(args, func(k string) string { return env[k] })
	return c, rest, err
}

func TestLoaderPrecedence(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want testConfig
	}{
		{"defaults", nil, nil, testConfig{"127.0.0.1:1", false, 2, time.Second}},
		{"env", nil, map[string]string{"PORTCULLIS_LISTEN": ":9", "PORTCULLIS_VERBOSE": "true", "PORTCULLIS_WORKERS": "4"}, testConfig{":9", true, 4, time.Second}},
		{"flag beats env", []string{"-listen", ":7"}, map[string]string{"PORTCULLIS_LISTEN": ":9"}, testConfig{":7", false, 2, time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := load(tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLoaderReportsEveryBadValue(t *testing.T) {
	_, _, err := load(nil, map[string]string{"PORTCULLIS_WORKERS": "many", "PORTCULLIS_TIMEOUT": "soon"})
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for _, want := range []string{`PORTCULLIS_WORKERS="many"`, `PORTCULLIS_TIMEOUT="soon"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestProblems(t *testing.T) {
	var p Problems
	if p.Err() != nil {
		t.Fatal("empty Problems is an error")
	}
	p.Add("region", "", "is required")
	p.Add("jwks-url", "ftp://x", "must be http or https")
	err := p.Err()
	for _, want := range []string{`PORTCULLIS_REGION="": is required`, `PORTCULLIS_JWKS_URL="ftp://x"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not contain %q", err, want)
		}
	}
}
