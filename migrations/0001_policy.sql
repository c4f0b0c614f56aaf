-- Policy entities: everything a data plane needs, published as one snapshot.
-- Every entity row carries revision (the admin API's ETag), created_at and updated_at.
-- Foreign keys use the default NO ACTION, so deleting a row that is still referenced fails.

CREATE TABLE policy_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint  NOT NULL CHECK (version > 0)
);
INSERT INTO policy_state (singleton, version) VALUES (true, 1);

CREATE TABLE tenants (
    name         text PRIMARY KEY,
    display_name text NOT NULL DEFAULT '',
    revision     bigint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE tiers (
    name                    text PRIMARY KEY,
    requests_per_minute     bigint NOT NULL CHECK (requests_per_minute > 0),
    tokens_per_hour         bigint NOT NULL CHECK (tokens_per_hour > 0),
    max_concurrent_requests bigint NOT NULL CHECK (max_concurrent_requests > 0),
    allowed_models          text[] NOT NULL DEFAULT '{}',
    allowed_operations      text[] NOT NULL DEFAULT '{}',
    default_max_tokens      bigint NOT NULL DEFAULT 0 CHECK (default_max_tokens >= 0),
    revision                bigint NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE residency_rules (
    residency       text PRIMARY KEY,
    allowed_regions text[] NOT NULL,
    revision        bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clients (
    client_id  text PRIMARY KEY,
    tenant     text NOT NULL CONSTRAINT clients_tenant_fkey REFERENCES tenants (name),
    tier       text NOT NULL CONSTRAINT clients_tier_fkey REFERENCES tiers (name),
    residency  text CONSTRAINT clients_residency_fkey REFERENCES residency_rules (residency),
    enabled    boolean NOT NULL DEFAULT true,
    revision   bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clients_tenant_idx ON clients (tenant);
CREATE INDEX clients_tier_idx ON clients (tier);
CREATE INDEX clients_residency_idx ON clients (residency);

CREATE TABLE providers (
    name       text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('openai', 'anthropic', 'ollama')),
    revision   bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE deployments (
    name                          text PRIMARY KEY,
    provider                      text NOT NULL CONSTRAINT deployments_provider_fkey REFERENCES providers (name),
    region                        text NOT NULL,
    kind                          text NOT NULL DEFAULT 'cloud' CHECK (kind IN ('cloud', 'self_hosted')),
    base_url                      text NOT NULL,
    key_source                    text NOT NULL DEFAULT 'none'
                                  CHECK (key_source IN ('none', 'file', 'vault', 'vault_dynamic', 'env')),
    key_path                      text NOT NULL DEFAULT '',
    tls_verify                    boolean NOT NULL DEFAULT true,
    tls_min_version               text NOT NULL DEFAULT '' CHECK (tls_min_version IN ('', 'TLS1.2', 'TLS1.3')),
    tls_pin_sha256                text[] NOT NULL DEFAULT '{}',
    tls_ca_file                   text NOT NULL DEFAULT '',
    timeout_seconds               integer NOT NULL DEFAULT 30 CHECK (timeout_seconds > 0),
    retry_max_attempts            integer NOT NULL DEFAULT 3 CHECK (retry_max_attempts > 0),
    retry_backoff                 text NOT NULL DEFAULT 'exponential' CHECK (retry_backoff IN ('exponential', 'constant')),
    breaker_failure_threshold     integer NOT NULL DEFAULT 5 CHECK (breaker_failure_threshold > 0),
    breaker_reset_timeout_seconds integer NOT NULL DEFAULT 60 CHECK (breaker_reset_timeout_seconds > 0),
    enabled                       boolean NOT NULL DEFAULT true,
    revision                      bigint NOT NULL DEFAULT 1,
    created_at                    timestamptz NOT NULL DEFAULT now(),
    updated_at                    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deployments_provider_idx ON deployments (provider);

CREATE TABLE models (
    id                text PRIMARY KEY,
    name              text NOT NULL,
    deployment        text NOT NULL CONSTRAINT models_deployment_fkey REFERENCES deployments (name),
    upstream_model    text NOT NULL,
    input_usd_per_1m  numeric NOT NULL DEFAULT 0 CHECK (input_usd_per_1m >= 0),
    output_usd_per_1m numeric NOT NULL DEFAULT 0 CHECK (output_usd_per_1m >= 0),
    revision          bigint NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT models_name_deployment_key UNIQUE (name, deployment)
);
CREATE INDEX models_deployment_idx ON models (deployment);

CREATE TABLE fallback_maps (
    id         text PRIMARY KEY,
    provider   text NOT NULL CONSTRAINT fallback_maps_provider_fkey REFERENCES providers (name),
    from_model text NOT NULL,
    to_model   text NOT NULL,
    revision   bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT fallback_maps_provider_from_model_key UNIQUE (provider, from_model)
);

CREATE TABLE revoked_tokens (
    jti        text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    reason     text NOT NULL DEFAULT '',
    revision   bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);
