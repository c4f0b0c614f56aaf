-- Key custody (docs/design.md §6): each deployment's rotation schedule and minter, the
-- rotation history, and the key-access log. Neither table ever holds key material:
-- versions, identifiers, who and why.

ALTER TABLE deployments
    -- 0 means no schedule: the key rotates only on demand (or when an operator writes
    -- a new Vault version, which the rotator detects).
    ADD COLUMN rotation_interval_days integer NOT NULL DEFAULT 0
        CHECK (rotation_interval_days >= 0 AND rotation_interval_days <= 3650),
    -- How long the previous key stays valid after a rotation; fractions allowed
    -- (0.5 is half an hour).
    ADD COLUMN rotation_overlap_hours double precision NOT NULL DEFAULT 2
        CHECK (rotation_overlap_hours >= 0 AND rotation_overlap_hours <= 720),
    -- Where a new key comes from: vault_version (an operator or pipeline writes a new
    -- KV version), openai_admin (the provider's admin API mints one), vault_dynamic
    -- (Vault leases one). '' for key sources that do not rotate.
    ADD COLUMN minter text NOT NULL DEFAULT ''
        CHECK (minter IN ('', 'vault_version', 'openai_admin', 'vault_dynamic')),
    -- openai_admin: the Vault KV path of the admin key, and the project whose
    -- service accounts hold the minted keys.
    ADD COLUMN admin_key_path text NOT NULL DEFAULT '',
    ADD COLUMN admin_project_id text NOT NULL DEFAULT '';

CREATE TABLE key_rotations (
    id              bigserial PRIMARY KEY,
    deployment      text NOT NULL,
    provider        text NOT NULL,
    -- rotated: the previous key stays valid until overlap_until; revoked: it is
    -- dropped at once.
    kind            text NOT NULL CHECK (kind IN ('rotated', 'revoked')),
    -- What started it: schedule, manual (CLI or API), detected (a new Vault version
    -- written outside the gateway), revoke.
    trigger         text NOT NULL CHECK (trigger IN ('schedule', 'manual', 'detected', 'revoke')),
    actor           text NOT NULL DEFAULT '',
    reason          text NOT NULL DEFAULT '',
    old_version     integer,
    new_version     integer,
    overlap_until   timestamptz,
    -- openai_admin: the provider's id of the minted key's service account, so it can
    -- be deleted when its successor's overlap ends. Never the key.
    provider_key_id text NOT NULL DEFAULT '',
    -- When the old key was retired (deleted at the provider, or simply out of overlap).
    retired_at      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX key_rotations_deployment_idx ON key_rotations (deployment, created_at DESC);
CREATE INDEX key_rotations_unretired_idx ON key_rotations (overlap_until) WHERE retired_at IS NULL;

CREATE TABLE key_access (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    -- worker or controlplane, and which one.
    actor_kind  text NOT NULL CHECK (actor_kind IN ('worker', 'controlplane')),
    actor_id    text NOT NULL,
    region      text NOT NULL DEFAULT '',
    deployment  text NOT NULL DEFAULT '',
    path        text NOT NULL,
    version     integer,
    -- startup, rotation, revocation, renewal, refresh, retry_401, mint, admin_key, ...
    reason      text NOT NULL,
    ok          boolean NOT NULL,
    error       text NOT NULL DEFAULT '',
    -- The event's id (worker + sequence), so a redelivered event is stored once.
    event_id    text NOT NULL UNIQUE,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX key_access_actor_idx ON key_access (actor_id, at DESC);
CREATE INDEX key_access_deployment_idx ON key_access (deployment, at DESC);
