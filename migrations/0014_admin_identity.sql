-- Admin identity (docs/admin-identity.md): the people and service accounts who
-- administer the gateway, their role bindings, their API tokens, and the
-- append-only, hash-chained history of every admin write.

-- The admin tokens of 0002 become the two principal-less tokens: "bootstrap", made
-- at first start, which may only manage principals (create the first
-- administrators), and "break_glass", which `controlplane admin-token reset` issues
-- and which may do everything. A token from before this migration is a bootstrap
-- token: create an administrator with it, then disable it.
ALTER TABLE admin_tokens ADD COLUMN kind text NOT NULL DEFAULT 'bootstrap'
    CHECK (kind IN ('bootstrap', 'break_glass'));

-- A principal is a person (who signs in with OIDC) or a service account (which
-- uses API tokens). name is its key in the API: a person's is taken from the
-- identity provider's claims at first sign-in.
CREATE TABLE principals (
    name         text        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('person', 'service')),
    display_name text        NOT NULL DEFAULT '',
    email        text        NOT NULL DEFAULT '',
    -- The identity provider's issuer and subject of a person; NULL for a service
    -- account and for a person an administrator created before their first sign-in.
    oidc_issuer  text,
    oidc_subject text,
    disabled     boolean     NOT NULL DEFAULT false,
    revision     bigint      NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (oidc_issuer, oidc_subject)
);

-- A role binding gives a principal a role; tenant_admin bindings name their tenant.
-- source "manual" bindings are set through the API; "oidc" ones are replaced from
-- the identity provider's claims at each sign-in.
CREATE TABLE role_bindings (
    principal text NOT NULL REFERENCES principals (name) ON DELETE CASCADE ON UPDATE CASCADE,
    role      text NOT NULL CHECK (role IN ('admin', 'operator', 'key_custodian', 'auditor', 'tenant_admin')),
    tenant    text REFERENCES tenants (name) ON DELETE CASCADE ON UPDATE CASCADE,
    source    text NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'oidc')),
    CHECK ((role = 'tenant_admin') = (tenant IS NOT NULL))
);
CREATE UNIQUE INDEX role_bindings_unique_idx ON role_bindings (principal, role, coalesce(tenant, ''), source);

-- An API token belongs to a principal. Only its SHA-256 is kept; the token is shown
-- once, when it is created. role, when set, narrows the token to that one of the
-- principal's roles.
CREATE TABLE api_tokens (
    id           text        PRIMARY KEY,
    principal    text        NOT NULL REFERENCES principals (name) ON DELETE CASCADE ON UPDATE CASCADE,
    name         text        NOT NULL,
    role         text CHECK (role IN ('admin', 'operator', 'key_custodian', 'auditor', 'tenant_admin')),
    token_hash   bytea       NOT NULL UNIQUE CHECK (octet_length(token_hash) = 32),
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    revoked_by   text
);
CREATE INDEX api_tokens_principal_idx ON api_tokens (principal, created_at);

-- The change history: one row per admin write, chained like the audit archive:
--   hash(seq) = hex(SHA-256(hash(seq-1) || record(seq)))
-- where record is the row's canonical JSON (docs/admin-identity.md "Change
-- history") and hash(0) is hex(SHA-256("portcullis-changes")). before and after are
-- the JSON of the resource (never a secret: key paths and versions only).
CREATE TABLE admin_changes (
    seq            bigint      PRIMARY KEY CHECK (seq > 0),
    at             timestamptz NOT NULL,
    principal      text        NOT NULL,
    principal_kind text        NOT NULL,
    roles          text        NOT NULL,
    credential     text        NOT NULL,
    source         text        NOT NULL,
    request_id     text        NOT NULL,
    action         text        NOT NULL,
    resource       text        NOT NULL,
    resource_key   text        NOT NULL,
    before         text,
    after          text,
    policy_version bigint,
    prev_hash      text        NOT NULL,
    hash           text        NOT NULL
);
CREATE INDEX admin_changes_resource_idx ON admin_changes (resource, seq);
CREATE INDEX admin_changes_principal_idx ON admin_changes (principal, seq);
CREATE INDEX admin_changes_at_idx ON admin_changes (at);

-- Append-only: a row once written is never updated or deleted by the control plane,
-- and the database refuses it too. (Whoever can drop this trigger can rewrite rows;
-- the hash chain then shows it, see `portcullis changes verify`.)
CREATE FUNCTION admin_changes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_changes is append-only';
END $$;
CREATE TRIGGER admin_changes_append_only BEFORE UPDATE OR DELETE ON admin_changes
    FOR EACH ROW EXECUTE FUNCTION admin_changes_append_only();
CREATE TRIGGER admin_changes_no_truncate BEFORE TRUNCATE ON admin_changes
    FOR EACH STATEMENT EXECUTE FUNCTION admin_changes_append_only();
