-- Audit archive (docs/design.md §7): every data plane's audit events, stored by the control
-- plane per region and hash-chained per region, so that a region's export shows any
-- edit, removal or reordering. Raw prompts, responses, tokens and keys are never in
-- an event, so never here.

-- One row per archived event. Partitioned by region (LIST), then by month of the
-- event's ts (RANGE, UTC months). The ingest creates partitions on demand, under an
-- advisory lock, named
--   audit_events_<region>             (or audit_events_#<hash> for a long or odd region)
--   audit_events_<region>@<YYYY>-<MM>
-- The columns repeat the event's fields for queries (showback, anomaly rules); the
-- event column holds its canonical JSON, which the chain hash covers and exports carry.
CREATE TABLE audit_events (
    region              text        NOT NULL,
    -- The event's place in its region's chain: 1, 2, 3, … without gaps, in the order
    -- the control plane archived the events (close to, but not always, ts order: an
    -- event replayed from a data plane's spool arrives late).
    seq                 bigint      NOT NULL,
    ts                  timestamptz NOT NULL,
    request_id          text        NOT NULL,
    worker              text        NOT NULL,
    client_id           text        NOT NULL,
    tenant_id           text        NOT NULL,
    operation           text        NOT NULL,
    model               text        NOT NULL,
    provider            text        NOT NULL,
    deployment          text        NOT NULL,
    key_version         integer     NOT NULL,
    prompt_hash         text        NOT NULL,
    response_hash       text        NOT NULL,
    tokens_in           bigint      NOT NULL,
    tokens_out          bigint      NOT NULL,
    cost_usd_micros     bigint      NOT NULL,
    latency_ms          bigint      NOT NULL,
    upstream_latency_ms bigint      NOT NULL,
    status              integer     NOT NULL,
    error_code          text,
    stream              boolean     NOT NULL,
    fallback            boolean     NOT NULL,
    fallback_model      text        NOT NULL,
    fallback_reason     text        NOT NULL,
    flagged             boolean     NOT NULL,
    flags               text[]      NOT NULL,
    source_net          text        NOT NULL,
    headers             jsonb       NOT NULL,
    -- The canonical JSON of the event (package chain): exactly the bytes exported.
    event               bytea       NOT NULL,
    -- chain_hash = hex(SHA-256(prev_hash || event)); prev_hash is the previous event's
    -- chain_hash, or for seq 1 hex(SHA-256('portcullis-audit:' || region)).
    prev_hash           text        NOT NULL,
    chain_hash          text        NOT NULL,
    ingested_at         timestamptz NOT NULL DEFAULT now()
) PARTITION BY LIST (region);

-- Exports read a region by seq; time-range exports find their first and last seq by
-- ts; client exports and per-client rollups read by client and ts.
CREATE INDEX audit_events_seq_idx ON audit_events (region, seq);
CREATE INDEX audit_events_ts_idx ON audit_events (region, ts, seq);
CREATE INDEX audit_events_client_idx ON audit_events (region, client_id, ts);

-- The request ids each region has archived: an event redelivered by JetStream or
-- replayed from a spool is recognised here, in the same transaction as the insert,
-- and stored once. Not partitioned, so the key holds across months.
CREATE TABLE audit_request_ids (
    region     text NOT NULL,
    request_id text NOT NULL,
    PRIMARY KEY (region, request_id)
);

-- Each region's chain head: the last seq and its chain_hash (the genesis hash while
-- seq is 0). An ingest locks the row (SELECT … FOR UPDATE) to append, so control-plane
-- replicas append one batch at a time and the chain stays linear.
CREATE TABLE audit_chain (
    region     text PRIMARY KEY,
    seq        bigint      NOT NULL CHECK (seq >= 0),
    head       text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
