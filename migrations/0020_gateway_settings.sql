-- Gateway-wide settings in the policy (policy.GatewaySettings): what every data plane
-- would otherwise take from its own configuration (the token issuer, audience and
-- required claims; the audit header allowlist; when each provider falls back; each
-- region's upstream proxies), changed without a restart. One row,
-- named 'gateway'; NULL and empty values leave the data planes' own settings.
CREATE TABLE gateway_settings (
    name          text PRIMARY KEY CHECK (name = 'gateway'),
    auth          jsonb NOT NULL DEFAULT '{}',
    audit_headers jsonb,
    fallbacks     jsonb,
    proxies       jsonb,
    revision      bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
