package health

import (
	"strings"
	"testing"
	"time"
)

func TestEncodeDecode(t *testing.T) {
	in := Report{Worker: "w1", Region: "eu", At: time.Unix(1700000000, 0).UTC(), PolicyVersion: 3,
		Deployments: []Deployment{{Name: "openai-eu", Breaker: "open", ErrorRate: 0.5, Samples: 12}}}
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if out.Version != SchemaVersion || out.Worker != "w1" || len(out.Deployments) != 1 || out.Deployments[0].Breaker != "open" {
		t.Fatalf("round trip: %+v", out)
	}
	for _, tc := range []struct{ name, data, want string }{
		{"not json", `nope`, "health report"},
		{"future schema", `{"version":2,"worker":"w"}`, "schema version 2"},
		{"no worker", `{"version":1}`, "no worker"},
	} {
		if _, err := Decode([]byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Decode = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}
