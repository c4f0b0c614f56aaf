package policycache_test

import (
	"io"
	"log/slog"
	"testing"

	"github.com/portcullis-gw/portcullis/dataplane/internal/policycache"
	"github.com/portcullis-gw/portcullis/shared/guardrails"
	"github.com/portcullis-gw/portcullis/shared/policy"
)

// TestClientGuardrailsAreTierThenTenantThenClient: a client's compiled guardrails
// are its tier's with its tenant's override and its own on top; a client with
// nothing on has none.
func TestClientGuardrailsAreTierThenTenantThenClient(t *testing.T) {
	s := snapshot(1, "plain", "own")
	s.Tiers[0].Guardrails = policy.Guardrails{PII: policy.GuardrailFamily{Input: policy.GuardrailFlag}}
	s.Tenants[0].Guardrails = &policy.Guardrails{PII: policy.GuardrailFamily{Input: policy.GuardrailRedact}}
	s.Clients[1].Guardrails = &policy.Guardrails{Secrets: policy.GuardrailFamily{Output: policy.GuardrailBlock}}
	s.Clients = append(s.Clients, policy.Client{ClientID: "off", Tenant: "t", Tier: "tier", Enabled: true,
		Guardrails: &policy.Guardrails{PII: policy.GuardrailFamily{Input: policy.GuardrailOff}}})
	p := policycache.Compile(s, "eu", slog.New(slog.NewTextHandler(io.Discard, nil)))
	plain, _ := p.Client("plain")
	own, _ := p.Client("own")
	off, _ := p.Client("off")
	if plain.Guardrails.Action(guardrails.Input, guardrails.PII) != guardrails.RedactAction ||
		plain.Guardrails.Action(guardrails.Output, guardrails.Secrets) != guardrails.Off {
		t.Fatalf("plain: tier flag under tenant redact, got %v", plain.Guardrails.Action(guardrails.Input, guardrails.PII))
	}
	if own.Guardrails.Action(guardrails.Output, guardrails.Secrets) != guardrails.Block ||
		own.Guardrails.Action(guardrails.Input, guardrails.PII) != guardrails.RedactAction {
		t.Fatal("own: its secrets block on top of the tenant's PII redaction")
	}
	if off.Guardrails != nil {
		t.Fatalf("off: every family off compiles to nil, got %+v", off.Guardrails)
	}
}
