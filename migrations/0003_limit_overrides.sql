-- Per-client limit overrides: a time-boxed replacement of some of one client's tier
-- limits, e.g. a throttle set by anomaly detection or a temporary raise. At most one
-- per client. A NULL limit keeps the tier's value; at least one limit is set.
--
-- Unlike the foreign keys of 0001, this one cascades: an override belongs to its
-- client, so deleting the client deletes its override (in the same transaction, which
-- bumps the policy version). An expired row stays until it is replaced or its client
-- is deleted; snapshots and the admin API treat it as absent.

CREATE TABLE limit_overrides (
    client_id               text PRIMARY KEY
                            CONSTRAINT limit_overrides_client_id_fkey REFERENCES clients (client_id) ON DELETE CASCADE,
    requests_per_minute     bigint CHECK (requests_per_minute > 0),
    tokens_per_hour         bigint CHECK (tokens_per_hour > 0),
    max_concurrent_requests bigint CHECK (max_concurrent_requests > 0),
    expires_at              timestamptz NOT NULL,
    reason                  text NOT NULL DEFAULT '',
    set_by                  text NOT NULL DEFAULT '',
    revision                bigint NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT limit_overrides_some_limit_check
        CHECK (num_nonnulls(requests_per_minute, tokens_per_hour, max_concurrent_requests) > 0)
);
CREATE INDEX limit_overrides_expires_at_idx ON limit_overrides (expires_at);
