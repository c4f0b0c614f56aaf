-- Showback and anomaly detection (docs/design.md §8): hourly usage rollups kept by the
-- audit ingest, the networks each client has called from, the anomaly rules, and the
-- alerts they raise.

-- Usage per UTC hour, region, client and model, maintained in the same transaction
-- that archives the events (store.AppendAudit): an event archived once is counted
-- once, so the rollup always equals the sum of audit_events. Events of requests that
-- never authenticated have client_id ''.
CREATE TABLE usage_hourly (
    hour            timestamptz NOT NULL CHECK (date_trunc('hour', hour AT TIME ZONE 'UTC') = hour AT TIME ZONE 'UTC'),
    region          text        NOT NULL,
    tenant_id       text        NOT NULL,
    client_id       text        NOT NULL,
    model           text        NOT NULL,
    requests        bigint      NOT NULL CHECK (requests >= 0),
    tokens_in       bigint      NOT NULL CHECK (tokens_in >= 0),
    tokens_out      bigint      NOT NULL CHECK (tokens_out >= 0),
    cost_usd_micros bigint      NOT NULL CHECK (cost_usd_micros >= 0),
    PRIMARY KEY (hour, region, client_id, model)
);
-- The detector reads a client's recent and trailing hours.
CREATE INDEX usage_hourly_client_idx ON usage_hourly (client_id, hour);

-- The source networks (IPv4 /24, IPv6 /48) each client has called from, also kept by
-- the archive transaction. novel_at is set to the time of the first event from a
-- network the client had not used in the 7 days before (while it had called from
-- some other network before), and cleared by the detector once it has alerted.
CREATE TABLE client_networks (
    client_id  text        NOT NULL,
    source_net text        NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    novel_at   timestamptz,
    PRIMARY KEY (client_id, source_net)
);
CREATE INDEX client_networks_novel_idx ON client_networks (novel_at) WHERE novel_at IS NOT NULL;

-- Anomaly rules. token_spike fires when a client's tokens (in + out) of the last hour
-- exceed factor × its baseline: the mean hourly tokens over the trailing
-- baseline_days, floored at min_baseline_tokens. new_source_ip fires when a client
-- calls from a network it has not used in the last 7 days.
CREATE TABLE anomaly_rules (
    name                         text PRIMARY KEY,
    kind                         text    NOT NULL CHECK (kind IN ('token_spike', 'new_source_ip')),
    enabled                      boolean NOT NULL DEFAULT true,
    factor                       double precision NOT NULL DEFAULT 5 CHECK (factor > 1),
    baseline_days                integer NOT NULL DEFAULT 7 CHECK (baseline_days BETWEEN 1 AND 90),
    min_baseline_tokens          bigint  NOT NULL DEFAULT 10000 CHECK (min_baseline_tokens > 0),
    action                       text    NOT NULL CHECK (action IN ('alert', 'alert_and_throttle', 'block')),
    -- The throttle's limits; NULL tokens_per_hour means the client's baseline (floored
    -- at min_baseline_tokens), NULL requests_per_minute keeps the tier's value.
    throttle_tokens_per_hour     bigint  CHECK (throttle_tokens_per_hour > 0),
    throttle_requests_per_minute bigint  CHECK (throttle_requests_per_minute > 0),
    throttle_minutes             integer NOT NULL DEFAULT 60 CHECK (throttle_minutes BETWEEN 1 AND 43200),
    -- Where to POST the alert, signed; NULL uses the control plane's alert-webhook-url.
    webhook_url                  text,
    revision                     bigint NOT NULL DEFAULT 1,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz NOT NULL DEFAULT now()
);

-- The seed's default rule, and the key-usage rule of its FAQ.
INSERT INTO anomaly_rules (name, kind, factor, baseline_days, min_baseline_tokens, action, throttle_minutes)
VALUES ('token_spike', 'token_spike', 5, 7, 10000, 'alert_and_throttle', 60),
       ('new_source_ip', 'new_source_ip', 5, 7, 10000, 'alert', 60);

-- Alerts raised by the detector. dedup_key makes one alert per rule, client and
-- occurrence (the UTC hour for token_spike, the network and its first time for
-- new_source_ip), so replicas running the detector at once raise it once.
CREATE TABLE alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL,
    severity        text        NOT NULL,
    client_id       text        NOT NULL,
    tenant_id       text        NOT NULL,
    rule            text        NOT NULL,
    dedup_key       text        NOT NULL,
    message         text        NOT NULL,
    details         jsonb       NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text,
    UNIQUE (rule, client_id, dedup_key)
);
CREATE INDEX alerts_unacknowledged_idx ON alerts (id) WHERE acknowledged_at IS NULL;
