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

// TestTenThousandClientsFitOnePayload guards DESIGN §3: a policy for 10k clients must
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
