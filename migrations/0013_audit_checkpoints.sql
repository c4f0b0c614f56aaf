-- Signed audit checkpoints (docs/audit.md "Signed checkpoints"): every
-- audit-checkpoint-interval the control plane signs each region's chain head (the seq
-- and chain_hash of its newest archived event) with its Ed25519 audit signing key,
-- keeps the checkpoint here and publishes it on checkpoints.audit.<region> (stream
-- PC_CHECKPOINTS), so that a later rewrite of the archive, recomputed chain and all,
-- contradicts a signature made before it.
--
-- sig is the Ed25519 signature of the message
--   "portcullis-audit-checkpoint-v1\n" || region || "\n" || seq || "\n" || chain_hash || "\n" || at
-- with seq in decimal and at in RFC 3339 with up to nine fractional digits, UTC ("Z"),
-- by the key whose id is key_id ("ed25519:" and the first 16 hex digits of the
-- SHA-256 of the public key). A head is signed once: replicas that sign the same
-- head at the same time insert one row, and only the replica whose insert succeeded
-- publishes it.
CREATE TABLE audit_checkpoints (
    region       text        NOT NULL,
    seq          bigint      NOT NULL CHECK (seq > 0),
    chain_hash   text        NOT NULL,
    at           timestamptz NOT NULL,
    key_id       text        NOT NULL,
    sig          bytea       NOT NULL,
    -- When the checkpoint reached PC_CHECKPOINTS; NULL until then (NATS was down),
    -- and the next round publishes it.
    published_at timestamptz,
    PRIMARY KEY (region, seq)
);

-- The rounds look for checkpoints not yet published.
CREATE INDEX audit_checkpoints_unpublished_idx ON audit_checkpoints (at) WHERE published_at IS NULL;
