package gatewayconfig

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/invopop/jsonschema"

	"github.com/portcullis-gw/portcullis/controlplane/internal/store"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// schemaPath is the file's JSON Schema, for editors (yaml-language-server).
const schemaPath = "../../../docs/gateway.schema.json"

// schemaDoc is File as its JSON Schema describes it: the same settings, with
// Portcullis's own resources typed as the admin API takes them.
type schemaDoc struct {
	APIVersion        string                            `json:"apiVersion" jsonschema:"required,enum=portcullis/v1"`
	Region            string                            `json:"region,omitempty" jsonschema:"description=Where the seed's blocks put a provider's deployment when the file declares none for it."`
	LLMProviders      map[string]LLMProvider            `json:"llm_providers,omitempty"`
	Gateway           *schemaGateway                    `json:"gateway,omitempty"`
	Logging           *Logging                          `json:"logging,omitempty"`
	AnomalyDetection  []AnomalyDetection                `json:"anomaly_detection,omitempty"`
	UpstreamProviders map[string]schemaUpstream         `json:"upstream_providers,omitempty"`
	Tenants           map[string]policy.Tenant          `json:"tenants,omitempty"`
	Tiers             map[string]policy.Tier            `json:"tiers,omitempty"`
	ResidencyRules    map[string]policy.ResidencyRule   `json:"residency_rules,omitempty"`
	Providers         map[string]policy.Provider        `json:"providers,omitempty"`
	Deployments       map[string]policy.Deployment      `json:"deployments,omitempty"`
	Models            map[string]policy.Model           `json:"models,omitempty"`
	FallbackMaps      map[string]policy.FallbackMap     `json:"fallback_maps,omitempty"`
	Clients           map[string]policy.Client          `json:"clients,omitempty"`
	AnomalyRules      map[string]store.AnomalyRule      `json:"anomaly_rules,omitempty"`
	Settings          map[string]policy.GatewaySettings `json:"settings,omitempty"`
	Principals        map[string]schemaPrincipal        `json:"principals,omitempty"`
}

// schemaPrincipal is a principal as POST /admin/v1/principals takes it.
type schemaPrincipal struct {
	Kind        string `json:"kind,omitempty" jsonschema:"enum=person,enum=service"`
	DisplayName string `json:"display_name,omitempty"`
	Email       string `json:"email,omitempty"`
	Disabled    bool   `json:"disabled,omitempty"`
	Roles       []struct {
		Role   string `json:"role" jsonschema:"required,enum=admin,enum=operator,enum=key_custodian,enum=auditor,enum=tenant_admin"`
		Tenant string `json:"tenant,omitempty"`
	} `json:"roles,omitempty"`
}

type schemaGateway struct {
	Auth            *Auth                  `json:"auth,omitempty"`
	PerClientLimits map[string]policy.Tier `json:"per_client_limits,omitempty"`
}

type schemaUpstream struct {
	BaseURL            string                 `json:"base_url,omitempty"`
	TLS                *schemaTLS             `json:"tls,omitempty"`
	TimeoutSeconds     *int                   `json:"timeout_seconds,omitempty"`
	Retry              *policy.Retry          `json:"retry,omitempty"`
	CircuitBreaker     *policy.CircuitBreaker `json:"circuit_breaker,omitempty"`
	SelfHostedFallback *SelfHostedFallback    `json:"self_hosted_fallback,omitempty"`
	Proxy              *Proxy                 `json:"proxy,omitempty"`
}

type schemaTLS struct {
	Verify     *bool    `json:"verify,omitempty"`
	MinVersion string   `json:"min_version,omitempty" jsonschema:"enum=TLS1.2,enum=TLS1.3"`
	PinSHA256  []string `json:"pin_sha256,omitempty"`
	CAFile     string   `json:"ca_file,omitempty"`
}

func generateSchema(t *testing.T) []byte {
	t.Helper()
	r := jsonschema.Reflector{RequiredFromJSONSchemaTags: true, DoNotReference: false}
	s := r.Reflect(&schemaDoc{})
	s.Title = "Portcullis gateway.yaml"
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// TestSchema: docs/gateway.schema.json is the schema of today's types (make
// config-schema rewrites it), and it names the same settings as File at every level
// the two share.
func TestSchema(t *testing.T) {
	got := generateSchema(t)
	if os.Getenv("PORTCULLIS_UPDATE_SCHEMA") != "" {
		if err := os.WriteFile(schemaPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatalf("%v: run make config-schema", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date with the types: run make config-schema", schemaPath)
	}
	for _, pair := range [][2]reflect.Type{
		{reflect.TypeOf(File{}), reflect.TypeOf(schemaDoc{})},
		{reflect.TypeOf(Gateway{}), reflect.TypeOf(schemaGateway{})},
		{reflect.TypeOf(UpstreamProvider{}), reflect.TypeOf(schemaUpstream{})},
		{reflect.TypeOf(TLS{}), reflect.TypeOf(schemaTLS{})},
	} {
		if a, b := jsonNames(pair[0]), jsonNames(pair[1]); !slices.Equal(a, b) {
			t.Errorf("%s has %v, its schema type %v", pair[0].Name(), a, b)
		}
	}
}

func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
