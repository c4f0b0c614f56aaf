package policy

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strings"
	"testing"
	"time"
)

func validSnapshot() *Snapshot {
	return &Snapshot{
		SchemaVersion:  SchemaVersion,
		Version:        7,
		Tenants:        []Tenant{{Name: "demo"}},
		Tiers:          []Tier{{Name: "default", RequestsPerMinute: 60, AllowedModels: []string{"gpt-4o-mini"}, AllowedOperations: Operations}},
		Clients:        []Client{{ClientID: "c1", Tenant: "demo", Tier: "default", Residency: "eu", Enabled: true}},
		Providers:      []Provider{{Name: "openai", Kind: ProviderOpenAI}},
		Deployments:    []Deployment{{Name: "openai-eu", Provider: "openai", Region: "eu", Kind: KindCloud, BaseURL: "https://x.invalid", Enabled: true}},
		Models:         []Model{{ID: "m1", Name: "gpt-4o-mini", Deployment: "openai-eu", UpstreamModel: "gpt-4o-mini"}},
		ResidencyRules: []ResidencyRule{{Residency: "eu", AllowedRegions: []string{"eu"}}},
		FallbackMaps:   []FallbackMap{{ID: "f1", Provider: "openai", FromModel: "gpt-4o", ToModel: "llama3-70b"}},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	in := validSnapshot()
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if out.Version != in.Version || len(out.Clients) != 1 || out.Clients[0].Residency != "eu" || out.Models[0].Deployment != "openai-eu" {
		t.Fatalf("round trip lost data: %+v", out)
	}
}

func TestDecodeRejects(t *testing.T) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.Bytes()
	}
	mutate := func(f func(*Snapshot)) []byte {
		s := validSnapshot()
		f(s)
		data, err := Encode(s)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"not gzip", []byte("{}"), "decompress"},
		{"not json", gz("nope"), "parse"},
		{"unknown schema", gz(`{"schema_version":99,"version":1}`), "schema version 99"},
		{"zero version", mutate(func(s *Snapshot) { s.Version = 0 }), "version 0"},
		{"unknown tier", mutate(func(s *Snapshot) { s.Clients[0].Tier = "gold" }), `unknown tier "gold"`},
		{"unknown deployment", mutate(func(s *Snapshot) { s.Models[0].Deployment = "nope" }), `unknown deployment "nope"`},
		{"duplicate client", mutate(func(s *Snapshot) { s.Clients = append(s.Clients, s.Clients[0]) }), "duplicate"},
		{"residency without rule", mutate(func(s *Snapshot) { s.ResidencyRules = nil }), "has no rule"},
		{"client residency global", mutate(func(s *Snapshot) { s.Clients[0].Residency = ResidencyGlobal }), `residency "global" has no rule`},
		{"rule named global", mutate(func(s *Snapshot) {
			s.ResidencyRules = append(s.ResidencyRules, ResidencyRule{Residency: ResidencyGlobal, AllowedRegions: []string{"eu"}})
		}), "reserved"},
		{"endpoint url not absolute", mutate(func(s *Snapshot) { s.ResidencyRules[0].EndpointURL = "eu.gateway.example.com" }), "endpoint_url"},
		{"endpoint url with credentials", mutate(func(s *Snapshot) { s.ResidencyRules[0].EndpointURL = "https://u:p@eu.example.com" }), "credentials"},
		{"endpoint url with query", mutate(func(s *Snapshot) { s.ResidencyRules[0].EndpointURL = "https://eu.example.com/?a=1" }), "query"},
		{"max choices over the limit", mutate(func(s *Snapshot) { s.Tiers[0].MaxChoices = MaxChoicesLimit + 1 }), "max_choices 129"},
		{"negative max choices", mutate(func(s *Snapshot) { s.Tiers[0].MaxChoices = -1 }), "max_choices -1"},
		{"negative max output tokens", mutate(func(s *Snapshot) { s.Tiers[0].MaxOutputTokens = -1 }), "must not be negative"},
		{"default over max output tokens", mutate(func(s *Snapshot) {
			s.Tiers[0].DefaultMaxTokens, s.Tiers[0].MaxOutputTokens = 2048, 1024
		}), "default_max_tokens 2048 is over max_output_tokens 1024"},
		{"override of unknown client", mutate(func(s *Snapshot) {
			s.LimitOverrides = []LimitOverride{{ClientID: "ghost", RequestsPerMinute: 5, ExpiresAt: time.Now().Add(time.Hour)}}
		}), `limit override: unknown client "ghost"`},
		{"duplicate override", mutate(func(s *Snapshot) {
			o := LimitOverride{ClientID: s.Clients[0].ClientID, RequestsPerMinute: 5, ExpiresAt: time.Now().Add(time.Hour)}
			s.LimitOverrides = []LimitOverride{o, o}
		}), "duplicate"},
		{"negative override", mutate(func(s *Snapshot) {
			s.LimitOverrides = []LimitOverride{{ClientID: s.Clients[0].ClientID, TokensPerHour: -1, ExpiresAt: time.Now().Add(time.Hour)}}
		}), "must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestRequestBoundsAndEndpointRoundTrip(t *testing.T) {
	in := validSnapshot()
	in.Tiers[0].MaxChoices, in.Tiers[0].MaxOutputTokens, in.Tiers[0].DefaultMaxTokens = 4, 2048, 2048
	in.ResidencyRules[0].EndpointURL = "https://eu.gateway.example.com"
	in.Clients = append(in.Clients, Client{ClientID: "anywhere", Tenant: "demo", Tier: "default", Enabled: true})
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if tier := out.Tiers[0]; tier.MaxChoices != 4 || tier.MaxOutputTokens != 2048 || tier.DefaultMaxTokens != 2048 {
		t.Errorf("tier after the round trip = %+v", tier)
	}
	if got := out.ResidencyRules[0].EndpointURL; got != "https://eu.gateway.example.com" {
		t.Errorf("endpoint_url after the round trip = %q", got)
	}
	if got := out.Clients[1].Residency; got != "" {
		t.Errorf("a client without residency decodes with residency %q", got)
	}
}

func TestEndpointURLProblem(t *testing.T) {
	for _, ok := range []string{"", "https://eu.gateway.example.com", "http://127.0.0.1:8081", "https://gw.example.com/eu"} {
		if msg := EndpointURLProblem(ok); msg != "" {
			t.Errorf("EndpointURLProblem(%q) = %q, want it accepted", ok, msg)
		}
	}
	for _, bad := range []string{"eu.gateway.example.com", "/eu", "ftp://eu.example.com", "https://", "https://:8081",
		"https://user@eu.example.com", "https://eu.example.com/?x=1", "https://eu.example.com/?", "https://eu.example.com/#top",
		"https://eu.example.com/#", "mailto:ops@example.com", "https://eu.example.com/" + strings.Repeat("a", 2048)} {
		if EndpointURLProblem(bad) == "" {
			t.Errorf("EndpointURLProblem(%q) accepted it", bad)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	s := validSnapshot()
	s.Clients[0].Tier = "gold"
	s.Clients[0].Tenant = "acme"
	s.Deployments[0].Provider = "azure"
	err := s.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken snapshot")
	}
	for _, want := range []string{"gold", "acme", "azure"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestTenThousandClientsFitOnePayload guards docs/design.md §3: a policy for 10k clients must
// fit NATS's default 1 MB max_payload.
func TestTenThousandClientsFitOnePayload(t *testing.T) {
	s := validSnapshot()
	s.Clients = nil
	for i := range 10000 {
		s.Clients = append(s.Clients, Client{ClientID: fmt.Sprintf("client-%05d-service", i), Tenant: "demo", Tier: "default", Residency: "eu", Enabled: true})
	}
	data, err := Encode(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) >= 1<<20 {
		t.Fatalf("encoded snapshot is %d bytes, over the 1 MiB payload limit", len(data))
	}
	if _, err := Decode(data); err != nil {
		t.Fatal(err)
	}
}
