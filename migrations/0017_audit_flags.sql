-- Guardrail flags in the audit archive (docs/guardrails.md): each flag is an object
-- {family, type, direction, action, count}, no longer a string. Every event archived
-- before had none, so the column converts as it is.
ALTER TABLE audit_events ALTER COLUMN flags TYPE jsonb USING to_jsonb(flags);
ALTER TABLE audit_events ALTER COLUMN flags SET DEFAULT '[]';
