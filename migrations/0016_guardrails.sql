-- Guardrail policies (docs/guardrails.md): a tier's, and a tenant's or a client's
-- override of it, as the JSON of shared/policy.Guardrails. A tier's is {} when it
-- sets nothing (every family off); a tenant's or client's NULL overrides nothing.
ALTER TABLE tiers ADD COLUMN guardrails jsonb NOT NULL DEFAULT '{}';
ALTER TABLE tenants ADD COLUMN guardrails jsonb;
ALTER TABLE clients ADD COLUMN guardrails jsonb;
